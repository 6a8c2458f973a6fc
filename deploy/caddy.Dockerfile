# Caddy (the load balancer of the compose cluster) from a static binary
# built on the host, for machines that cannot pull the caddy image. The
# paths match the public image, so docker-compose.yml runs either with the
# same command and mounts. scripts/compose-up.sh prepares the build
# context: caddy, built with CGO_ENABLED=0.
FROM scratch
COPY caddy /usr/bin/caddy
ENV PATH=/usr/bin \
    XDG_CONFIG_HOME=/config \
    XDG_DATA_HOME=/data
EXPOSE 5000
CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
