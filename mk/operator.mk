# The operator (operator/) and the REST types it shares with the engine (crates/rheo-rest/).
OPERATOR_BIN := $(CARGO_TARGET_DIR)/debug/rheo-operator
PYENV_PY = $(shell scripts/pyenv.sh)/python

.PHONY: test-operator crds golden crd-drift crd-validate

## make test-operator: unit, golden and mock-API tests, CRD drift, CRD validation of examples
test-operator:
	$(CARGO) test -p rheo-operator -p rheo-rest
	$(MAKE) --no-print-directory crd-drift crd-validate

$(OPERATOR_BIN): FORCE
	$(CARGO) build -p rheo-operator --bin rheo-operator
.PHONY: FORCE
FORCE:

## make crds: regenerate crds/flinkjob.yaml from the Rust types, and the chart's copy of it
crds: $(OPERATOR_BIN)
	$(OPERATOR_BIN) crd > crds/flinkjob.yaml
	$(MAKE) --no-print-directory chart-crds

## CI fails when crds/flinkjob.yaml is not what the code generates
crd-drift: $(OPERATOR_BIN)
	@$(OPERATOR_BIN) crd > $(CARGO_TARGET_DIR)/flinkjob.crd.yaml
	diff -u crds/flinkjob.yaml $(CARGO_TARGET_DIR)/flinkjob.crd.yaml || \
	  { echo "crds/flinkjob.yaml is stale: run 'make crds'"; exit 1; }

## examples must pass the CRD schema (and its CEL rules); each invalid fixture must fail naming its field
crd-validate:
	$(PYENV_PY) scripts/crd_validate.py crds/flinkjob.yaml --valid examples --invalid operator/tests/invalid

## make golden: regenerate the build step's golden files (review the diff)
golden:
	UPDATE_GOLDEN=1 $(CARGO) test -p rheo-operator --test golden
