# versitygw (the S3 server of the compose cluster) from a static binary
# built on the host, for machines that cannot pull versity/versitygw. The
# binary sits where the public image keeps it, so docker-compose.yml runs
# either image with the same command. scripts/compose-up.sh prepares the
# build context: versitygw, built with CGO_ENABLED=0.
FROM scratch
COPY versitygw /app/versitygw
ENTRYPOINT ["/app/versitygw"]
