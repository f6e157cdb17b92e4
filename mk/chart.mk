# The Helm chart (charts/rheo-operator): CRD copy, lint, render, tests.
# Helm itself runs as a library (pip helm-python-sdk via scripts/helm.py): no helm binary needed.
CHART_DIR := charts/rheo-operator
CRD_SRC := crds/flinkjob.yaml
CRD_COPY := $(CHART_DIR)/crds/flinkjob.yaml
# Extra flags for chart-template, e.g. make chart-template HELM_ARGS="--set watchNamespaces={a,b}"
HELM_ARGS ?=
# The project venv (scripts/requirements.txt); recursive so it is created only when a target needs it.
CHART_PY = $(shell scripts/pyenv.sh)/python

.PHONY: chart chart-crds chart-crds-check chart-lint chart-template test-chart

## make chart: copy the generated CRD into the chart, then lint the chart
chart: chart-crds chart-lint

## make chart-crds: copy crds/flinkjob.yaml (generated from the Rust types) into the chart's crds/
chart-crds:
	@if [[ ! -f $(CRD_SRC) ]]; then \
	  echo "chart-crds: $(CRD_SRC) does not exist yet; generate it first (make crds, the operator's CRD generator)" >&2; \
	  exit 1; \
	fi
	@mkdir -p $(dir $(CRD_COPY))
	@if cmp -s $(CRD_SRC) $(CRD_COPY); then echo "chart-crds: $(CRD_COPY) up to date"; \
	 else cp $(CRD_SRC) $(CRD_COPY) && echo "chart-crds: copied $(CRD_SRC) -> $(CRD_COPY)"; fi

## make chart-crds-check: fail if the chart's CRD copy drifted from crds/flinkjob.yaml (CI)
chart-crds-check:
	@if [[ ! -f $(CRD_SRC) && ! -f $(CRD_COPY) ]]; then \
	  echo "chart-crds-check: $(CRD_SRC) not generated yet; nothing to compare"; \
	elif ! cmp -s $(CRD_SRC) $(CRD_COPY); then \
	  echo "chart-crds-check: $(CRD_COPY) differs from $(CRD_SRC) (or one is missing): run make chart-crds and commit" >&2; \
	  diff -u $(CRD_SRC) $(CRD_COPY) | head -40 >&2 || true; \
	  exit 1; \
	else echo "chart-crds-check: $(CRD_COPY) in sync"; fi

chart-lint:
	$(CHART_PY) scripts/helm.py lint $(CHART_DIR) --strict

## make chart-template: print the rendered manifests (CRDs included), like `helm template`
chart-template:
	@$(CHART_PY) scripts/helm.py template $(CHART_DIR) --include-crds $(HELM_ARGS)

## make test-chart: lint, render several value sets, validate with kubernetes-validate, exact RBAC
test-chart: chart-crds-check
	$(CHART_PY) -m pytest charts/tests -p no:cacheprovider -q
