# syntax=docker/dockerfile:1
# gitrev: multi-stage build.
#   docker build -t gitrev .
#   docker run -e DATABASE_URL=postgres://… -p 8080:8080 gitrev
# The runtime image holds only the binary (no shell, no curl): HEALTHCHECK runs `gitrev healthcheck`.

ARG RUST_VERSION=1.85

# 1. Dependencies, cached apart from the source: built from the manifest and lock file alone
#    with stub sources, so editing src/ does not rebuild them.
FROM rust:${RUST_VERSION}-bookworm AS deps
WORKDIR /build
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/hot_paths.rs \
 && cargo build --release --locked --bin gitrev \
 && rm -rf src benches

# 2. The service, with the same release profile the benchmarks use (fat LTO, one codegen unit).
FROM deps AS build
COPY src ./src
COPY sql ./sql
COPY seed ./seed
COPY openapi.json ./
COPY benches ./benches
# Stub-built artifacts of our own crate must not be mistaken for fresh ones.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin gitrev \
 && install -D target/release/gitrev /out/gitrev

# 3. Runtime: distroless (glibc, CA certificates, no shell), non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
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
