# syntax=docker/dockerfile:1
# rtcd container image: build with the Rust toolchain, run on Debian slim.
#   docker build -t rtcd .
#   docker run --network host -e RTCD_API_SECURITY_ALLOWSELFREGISTRATION=true rtcd
# Layout as upstream's image: binary /opt/rtcd/bin/rtcd, workdir /opt/rtcd/bin, user "calls"
# (uid/gid 65532), entrypoint ./rtcd; pass "--config /config/config.toml" or RTCD_* variables.
#
# io_uring: Docker's and Kubernetes' default seccomp profiles block the io_uring syscalls, so
# rtc.io_backend = "auto" (the default) falls back to the portable backend and logs it. To use
# io_uring, run with a seccomp profile that allows io_uring_setup/io_uring_enter/
# io_uring_register and a memlock limit that fits its rings and registered buffers
# (--ulimit memlock=1073741824, as LimitMEMLOCK in deploy/rtcd.service).

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
ARG RTCD_BUILD_VERSION=""
WORKDIR /src
# The whole workspace (every member's manifest is needed to resolve it); only the daemon is
# built.
COPY . .
RUN RTCD_BUILD_VERSION="${RTCD_BUILD_VERSION}" cargo build --release --locked --bin rtcd \
    && ./target/release/rtcd --version

FROM debian:bookworm-slim
RUN groupadd --system --gid 65532 calls \
    && useradd --system --uid 65532 --gid calls --no-create-home --shell /usr/sbin/nologin calls \
    && mkdir -p /opt/rtcd/bin /config /var/lib/rtcd \
    && chown calls:calls /var/lib/rtcd
COPY --from=build /src/target/release/rtcd /opt/rtcd/bin/rtcd
COPY config/config.sample.toml /config/config.sample.toml
WORKDIR /opt/rtcd/bin
# No writable work directory is needed: log to the console, keep the store in a volume.
ENV RTCD_LOGGER_ENABLEFILE=false \
    RTCD_STORE_DATASOURCE=/var/lib/rtcd
VOLUME ["/var/lib/rtcd"]
EXPOSE 8045/tcp 8443/udp 8443/tcp
USER calls
# SIGTERM starts a graceful drain (rtc.drain_timeout_seconds); give `docker stop -t` more.
STOPSIGNAL SIGTERM
ENTRYPOINT ["./rtcd"]
