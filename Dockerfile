# syntax=docker/dockerfile:1
# The wasm-playground image: the service plus the Rust toolchain it runs (rustc, rustfmt,
# clippy, the wasm32-wasip1 standard library), as a non-root user, ready for a read-only root
# filesystem. docs/deploy.md says how to build, run and check it.
#
#   docker build -t wasm-playground .
#   docker run --rm -p 8000:8000 --read-only --tmpfs /tmp:rw,noexec,nosuid,size=1g \
#     --tmpfs /var/cache/wasm-playground:size=1g,uid=10001,gid=10001 \
#     -v wasm-playground-data:/var/lib/wasm-playground wasm-playground

# --- Build stage: the same steps as scripts/serve (target, release build, crates) ---------
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
# The toolchain rust-toolchain.toml pins, with its target and components, installed up front
# (rustup would do it on first use); then scripts/serve's `rustup target add wasm32-wasip1`.
COPY rust-toolchain.toml ./
RUN rustup toolchain install 1.95.0 --profile minimal --component rustfmt,clippy \
      --target wasm32-wasip1 \
 && rustup target add wasm32-wasip1
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY web ./web
RUN cargo build --release --locked --bin wasm-playground
# The toolchain the service compiles programs with, at a fixed path for the runtime stage.
RUN cp -a "$(rustc --print sysroot)" /opt/rust \
 && rm -rf /opt/rust/share/doc /opt/rust/lib/rustlib/src
# The offered crates (crates/Cargo.toml), built as scripts/serve does, into the path the runtime
# stage serves them from (the index records absolute paths).
COPY crates ./crates
RUN ./target/release/wasm-playground build-crates --crates-dir /opt/crates

# --- Runtime stage ------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates only for rediss:// or HTTPS-hosted dependencies; nothing else is needed:
# rustc links wasm modules with its bundled rust-lld.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 playground \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin playground \
 && install -d -o 10001 -g 10001 -m 0700 /var/cache/wasm-playground /var/lib/wasm-playground
COPY --from=build /opt/rust /opt/rust
COPY --from=build /opt/crates /opt/crates
COPY --from=build /src/target/release/wasm-playground /usr/local/bin/wasm-playground
# Only the toolchain copied above is there: no rustup, so no beta or nightly channels.
# Writable paths (mount them: tmpfs or emptyDir): the work dir for compiles (/tmp) and the
# artifact cache; and a persistent volume for the data dir (the SQLite share store) unless
# shares go to PostgreSQL. Everything else may be read-only.
ENV WASM_PLAYGROUND_ADDR=0.0.0.0:8000 \
    WASM_PLAYGROUND_RUSTC=/opt/rust/bin/rustc \
    WASM_PLAYGROUND_CHANNELS=stable \
    WASM_PLAYGROUND_CRATES_DIR=/opt/crates \
    WASM_PLAYGROUND_WORK_DIR=/tmp \
    WASM_PLAYGROUND_CACHE_DIR=/var/cache/wasm-playground \
    WASM_PLAYGROUND_DATA_DIR=/var/lib/wasm-playground \
    WASM_PLAYGROUND_LOG_FORMAT=json \
    RUST_BACKTRACE=0
USER 10001:10001
EXPOSE 8000
# SIGTERM: the server stops accepting and finishes the requests in flight.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/wasm-playground"]
CMD ["serve"]
