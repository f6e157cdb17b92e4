# The dashboard and Flink's own client against Rheo: a headless-Chromium test of the page and
# the real `flink` CLI (Flink 2.3 from PyPI) against `rheo jobmanager` + `rheo taskmanager`.
# Installs what it needs and caches it under $(RHEO_CACHE):
#   Debian chromium + chromium-driver (apt, once; 329 s measured on a loaded machine)
#   playwright-core from npm into $(RHEO_CACHE)/node (18 s)
#   apache-flink + apache-flink-libraries 2.3.0 without their Python deps (50 s, 330 MB)
# The screenshot of the job graph goes to $(RHEO_CACHE)/dashboard.png; `make dashboard-screenshot`
# runs the same test and replaces the README's docs/dashboard.png with it.

RHEO_DEBUG := $(CARGO_TARGET_DIR)/debug/rheo
DASHBOARD_NODE := $(RHEO_CACHE)/node

.PHONY: test-dashboard dashboard-deps dashboard-screenshot
DASHBOARD_SCREENSHOT ?= $(RHEO_CACHE)/dashboard.png
dashboard-deps:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)
	@test -d $(DASHBOARD_NODE)/node_modules/playwright-core || \
		(mkdir -p $(DASHBOARD_NODE) && cd $(DASHBOARD_NODE) && npm install --no-audit --no-fund --silent playwright-core@1)
	@scripts/flink-cli.sh >/dev/null

## make test-dashboard: the dashboard in headless Chromium and the real flink CLI against Rheo
test-dashboard: dashboard-deps build-deps
	$(CARGO) build -p rheo-cli
	cd tests/dashboard && RHEO_BIN=$(RHEO_DEBUG) FLINK_BIN=$$(../../scripts/flink-cli.sh) \
		FLINK_TEST_JAR=$(RHEO_CACHE)/flink-2.3.0/run-me.jar PLAYWRIGHT_DIR=$(DASHBOARD_NODE) \
		SCREENSHOT=$(DASHBOARD_SCREENSHOT) $$(../../scripts/pyenv.sh)/python -m pytest -q -p no:cacheprovider .

## make dashboard-screenshot: the dashboard test, refreshing the README's docs/dashboard.png
dashboard-screenshot:
	$(MAKE) test-dashboard DASHBOARD_SCREENSHOT=$(CURDIR)/docs/dashboard.png
