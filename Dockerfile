# tailgate image: the host-built static binary on an empty base.
#
# No base image is pulled (there is nothing in it a static Go binary needs):
# `make image` builds bin/tailgate (CGO_ENABLED=0, -trimpath, stripped) and
# stages a build context of its own (scripts/stage-image-context.sh): this
# file, the binary, the profiles, the host's CA bundle and an empty root
# skeleton.
# Build with docker or podman: `make image` (linux/amd64 and linux/arm64,
# one manifest list), through scripts/build-image.sh, which passes the
# release's identity (scripts/release-info.sh) as the build arguments below.
FROM scratch

ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://github.com/tailgate-dev/tailgate
ARG LICENSES=Apache-2.0
ARG OTELCOL_CORE=unknown
ARG OTELCOL_CONTRIB=unknown
# OCI annotation keys as labels (scripts/build-image.sh also sets them as
# manifest annotations); the upstream releases the binary bundles under
# tailgate's own keys.
LABEL org.opencontainers.image.title="tailgate" \
      org.opencontainers.image.description="OpenTelemetry Collector distribution for tail sampling at scale on Kubernetes" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.source="$SOURCE" \
      org.opencontainers.image.licenses="$LICENSES" \
      dev.tailgate.otelcol.core.version="$OTELCOL_CORE" \
      dev.tailgate.otelcol.contrib.version="$OTELCOL_CONTRIB"

# CA bundle for TLS to backends; /var/lib root-owned as in any distro.
COPY bin/image/rootfs/ /
# Writable state for the gateway's persistent sending queue (file_storage).
# Kubernetes mounts a volume here (the root filesystem is read-only there).
COPY --chown=10001:10001 bin/image/empty/ /var/lib/tailgate/

COPY bin/tailgate /tailgate
COPY LICENSE /usr/share/doc/tailgate/LICENSE
# The profiles (the gateway's with its default sampling policies), from configs/ (their
# one home in the repository).
COPY configs/agent.yaml configs/gateway.yaml /etc/tailgate/

USER 10001:10001
# OTLP gRPC, OTLP HTTP, health_check, internal telemetry, RED metrics (gateway).
EXPOSE 4317 4318 13133 8888 8889
ENTRYPOINT ["/tailgate"]
# recordpolicy (an alpha gate of tail_sampling): kept spans name the policy
# that kept them (docs/policies.md, "Why a trace was kept").
CMD ["--config", "/etc/tailgate/gateway.yaml", "--feature-gates=+processor.tailsamplingprocessor.recordpolicy"]
