# A real Apache Kafka broker for tests (scripts/services/kafka.sh): one KRaft node on 127.0.0.1,
# jars from Maven Central cached under $(RHEO_CACHE)/kafka/<version>/libs.
.PHONY: kafka-smoke kafka-fetch

## make kafka-smoke: start the broker, check produce/consume and transactions against it, stop it
kafka-smoke:
	scripts/with-kafka.sh python scripts/services/kafka_smoke.py

## make kafka-fetch: only cache the Kafka jars (e.g. in a CI warm-up step)
kafka-fetch:
	scripts/services/kafka.sh fetch

## make test-kafka: only the Kafka connector's tests against the real broker (crates/rheo-kafka/tests:
## source and sink features, SASL/SCRAM; kafka-word-count killed ten times, rescaled, fenced zombie,
## rerun, backlog metric); make test-engine runs them too
.PHONY: test-kafka
test-kafka: build-deps
	scripts/with-kafka.sh $(CARGO) test -p rheo-kafka --features rheo/s3
	scripts/with-kafka.sh $(CARGO) test -p rheo-cli --test kafka
