# The engine (worker/): tests and benchmarks.
.PHONY: test-engine bench
test-engine:
	$(CARGO) test -p rheo -p rheo-rest

bench:
	$(CARGO) build --release -p rheo --bin rheo-bench
	$(CARGO_TARGET_DIR)/release/rheo-bench
