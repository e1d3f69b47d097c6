# gitrev: the service's container image, in two stages (build, then a runtime with only the binary).
#   DOCKER_BUILDKIT=1 docker build -t gitrev .
#   docker run -e DATABASE_URL=postgres://… -p 8080:8080 gitrev
# The runtime image holds only the binary (no shell, no curl): HEALTHCHECK runs `gitrev healthcheck`.
# Needs BuildKit (`docker buildx build`, or DOCKER_BUILDKIT=1) for the cache mounts. There is no
# `# syntax=` line on purpose: the built-in Dockerfile frontend is enough, and that line would make
# every build pull a frontend image from a registry.
#
# The base images are build arguments, so a machine that reaches no image registry builds this same
# file from base images made locally (.ci/docker.sh does; docs/container.md has the commands):
#   docker build --build-arg BUILDER_IMAGE=… --build-arg RUNTIME_IMAGE=… -t gitrev .
# Both must be Debian bookworm: the binary links against the builder's glibc.

# Cargo.lock needs Rust 1.89 or later (uuid, time); CI builds with the toolchain of its own machine.
ARG RUST_VERSION=1.95
ARG BUILDER_IMAGE=rust:${RUST_VERSION}-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
# The cargo profile of the binary: `release` (fat LTO) for the image you ship; CI passes `ci-image`
# (Cargo.toml: no LTO, parallel codegen) because it checks that the image works, not its speed.
ARG PROFILE=release

# 1. Build. The whole source tree is copied (.dockerignore keeps out build output, VCS data and
#    files no build step reads), so this file does not depend on the crate layout. Downloaded
#    crates and target/ live in cache mounts that outlast the build: after a source change only
#    the changed crates recompile (the final link of the binary is always redone).
FROM ${BUILDER_IMAGE} AS build
ARG PROFILE
WORKDIR /src
COPY . .
RUN --mount=type=cache,id=gitrev-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=gitrev-target,target=/src/target,sharing=locked \
    cargo build --profile "$PROFILE" --locked --bin gitrev \
 && install -D -m 0755 "target/$PROFILE/gitrev" /out/gitrev

# 2. Runtime: glibc, CA certificates, non-root (distroless by default: no shell).
FROM ${RUNTIME_IMAGE}
COPY --from=build /out/gitrev /usr/local/bin/gitrev
ENV GITREV_LISTEN=0.0.0.0:8080 \
    GITREV_ENV=production \
    GITREV_LOG_FORMAT=json \
    GITREV_DATA_DIR=/tmp/gitrev
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/gitrev", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/gitrev"]
CMD ["serve"]
