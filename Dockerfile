# alertflow in a container: built in one stage, run as a non-root user in a slim image.
#   docker build -t alertflow .
#   docker run -v /var/log/suricata:/var/log/suricata:ro -v alertflow:/var/lib/alertflow -p 9187:9187 alertflow
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
 && objcopy --strip-debug target/release/alertflow /alertflow \
 && /alertflow config init --profile sensor > /alertflow.toml

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/alertflow --shell /usr/sbin/nologin alertflow \
 && install -d -o alertflow -g alertflow -m 0750 /var/lib/alertflow \
 && install -d /etc/alertflow
COPY --from=build /alertflow /usr/bin/alertflow
COPY --from=build /alertflow.toml /etc/alertflow/alertflow.toml
USER alertflow
VOLUME ["/var/lib/alertflow"]
# /metrics and /health (listening on every interface inside the container).
EXPOSE 9187
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/alertflow"]
CMD ["run", "--config", "/etc/alertflow/alertflow.toml", "--metrics-listen", "0.0.0.0:9187"]
