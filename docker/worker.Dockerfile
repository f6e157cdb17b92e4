# Worker image rheo:latest: the `rheo` binary (CLI, jobmanager, taskmanager, embedded mini-cluster).
# Built by `make images` (docker/build.sh) from a small context holding only the binary, which
# is compiled on the host (Debian bookworm, the same glibc as the base image).
ARG BASE_IMAGE=rheo-base:bookworm
FROM ${BASE_IMAGE}

ARG VERSION=dev
LABEL org.opencontainers.image.title="rheo" \
      org.opencontainers.image.description="Rheo: Apache Flink's streaming core rebuilt in Rust" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# Non-root user 10001 (as the chart and the operator's pods run it). /opt/rheo/data is the only
# writable place besides /tmp: both are volumes, so the image runs with a read-only root fs.
RUN groupadd --system --gid 10001 rheo \
 && useradd --system --uid 10001 --gid 10001 --home-dir /opt/rheo --no-create-home \
            --shell /usr/sbin/nologin rheo \
 && mkdir -p /opt/rheo/conf /opt/rheo/data \
 && chown 10001:10001 /opt/rheo/data \
 && chmod 0755 /opt/rheo /opt/rheo/conf \
 && test -s /etc/ssl/certs/ca-certificates.crt

COPY rheo /usr/local/bin/rheo

# Flink's layout: a config dir (rheo.yaml, mounted from a ConfigMap by the operator) and a
# working dir for local state; `rheo run` checkpoints to ./rheo-data/ there by default.
ENV RHEO_CONF_DIR=/opt/rheo/conf \
    HOME=/opt/rheo/data \
    TMPDIR=/tmp
WORKDIR /opt/rheo/data
VOLUME ["/opt/rheo/data", "/tmp"]

# REST (and /metrics) 8081, JobManager RPC 6123, TaskManager data 6121.
EXPOSE 8081 6123 6121

USER 10001:10001
ENTRYPOINT ["rheo"]
CMD ["--help"]
