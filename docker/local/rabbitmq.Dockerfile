# A stand-in for rabbitmq:3.13-management built from Debian's packages alone
# (scripts/build-images): Debian's rabbitmq-server (3.10 on bookworm), management plugin on.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends rabbitmq-server \
    && rm -rf /var/lib/apt/lists/* \
    && rabbitmq-plugins enable --offline rabbitmq_management \
    && mkdir -p /etc/rabbitmq/conf.d \
    && chown rabbitmq /etc/rabbitmq/conf.d
COPY rabbitmq-entrypoint /usr/local/bin/rabbitmq-entrypoint

# The server and every CLI call (the healthcheck too) run as rabbitmq with the same HOME,
# so they share the Erlang cookie the first start writes there.
USER rabbitmq
ENV HOME=/var/lib/rabbitmq RABBITMQ_LOGS=-
VOLUME ["/var/lib/rabbitmq"]
EXPOSE 5672 15672
HEALTHCHECK --interval=5s --timeout=10s --start-period=30s \
    CMD ["rabbitmq-diagnostics", "-q", "check_port_connectivity"]
ENTRYPOINT ["rabbitmq-entrypoint"]
# Not /usr/sbin/rabbitmq-server: Debian's wrapper sends the log to a file, not to stdout.
CMD ["/usr/lib/rabbitmq/bin/rabbitmq-server"]
