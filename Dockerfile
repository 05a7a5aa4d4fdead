# The hook in the flant/shell-operator image. Build context: the repository root.
#   docker build -t registry.example.com/istio-federation-hook:0.1.0 .
# Stage 1 builds a static (musl) binary; stage 2 adds it and hooks/ to shell-operator.
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev make
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/istio-federation-hook /istio-federation-hook

# The shell-operator version tests/platform.rs runs the hooks under (tests/platform/versions.env).
FROM ghcr.io/flant/shell-operator:v1.20.2
COPY --from=build /istio-federation-hook /usr/local/bin/istio-federation-hook
COPY hooks/ /hooks/
# addon-operator / Deckhouse module layout: copy hooks/istio-federation-discovery and
# hooks/istio-federation-export into modules/<NNN-name>/hooks/ and the binary into
# modules/<NNN-name>/hooks/lib/ (shell-operator and addon-operator skip `lib` directories), and
# set ISTIO_FEDERATION_HOOK_BIN=<that path> (the wrappers also find it on PATH). Settings then
# come from the module's values (istio.federation.enabled, global.discovery.clusterDomain/UUID).
ENV SHELL_OPERATOR_HOOKS_DIR=/hooks LOG_TYPE=json
