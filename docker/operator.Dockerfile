# Operator image rheo-operator:latest: the `rheo-operator` binary (reconciles FlinkJobs).
# Built by `make images` (docker/build.sh) from a small context holding only the binary.
ARG BASE_IMAGE=rheo-base:bookworm
FROM ${BASE_IMAGE}

ARG VERSION=dev
LABEL org.opencontainers.image.title="rheo-operator" \
      org.opencontainers.image.description="Kubernetes operator for Rheo FlinkJobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 rheo \
 && useradd --system --uid 10001 --gid 10001 --home-dir /opt/rheo --no-create-home \
            --shell /usr/sbin/nologin rheo \
 && test -s /etc/ssl/certs/ca-certificates.crt

COPY rheo-operator /usr/local/bin/rheo-operator

ENV TMPDIR=/tmp
VOLUME ["/tmp"]

# HTTP: /metrics, /healthz, /readyz.
EXPOSE 8080

USER 10001:10001
ENTRYPOINT ["rheo-operator"]
CMD ["run"]
