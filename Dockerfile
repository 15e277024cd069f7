# syntax=docker/dockerfile:1
# The operator's image: one static binary (x86_64-unknown-linux-musl) on distroless/static,
# running as the non-root user 65532. The binary is built by scripts/build-static, the very
# script you can run without a container engine, so the flags and target are the same.
#
#   docker build -t registry.example.com/deprovisioner:0.1.0 .
#
# Then set the chart's image.repository / image.tag (or the Deployment in deploy/) to it.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim AS build
# musl-gcc: ring (used by rustls) compiles C for the musl target.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools binutils \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY scripts/build-static ./scripts/build-static
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/build-static /out/deprovisioner

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/deprovisioner /deprovisioner
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/deprovisioner"]
CMD ["run"]
