# One image for every stage: `gf` (the operator CLI and `gf run ...`) plus the per-stage binaries.
# Build: docker build -t greenflash .   Used by docker-compose.yml.

FROM rust:1.88-bookworm AS build
WORKDIR /src
# rdkafka-sys builds librdkafka from source with the C toolchain and make the rust image has.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
        -p gf -p gf-receiver -p gf-normalizer -p gf-attributor -p gf-notifier \
    && mkdir -p /out \
    && cp target/release/gf target/release/gf-receiver target/release/gf-normalizer \
          target/release/gf-attributor target/release/gf-notifier /out/

FROM debian:bookworm-slim AS runtime
# ca-certificates for https webhooks; curl for health checks; jq for the compose demo set-up.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl jq \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/greenflash --create-home greenflash
COPY --from=build /out/ /usr/local/bin/
USER greenflash
WORKDIR /var/lib/greenflash
ENV GF_RECEIVER_ADDR=0.0.0.0:8080 \
    GF_LOG_FORMAT=json
EXPOSE 8080
CMD ["gf", "run", "all"]
