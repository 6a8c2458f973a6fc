# Flotilla's container image, built from source:
#
#   docker build -t flotilla .
#
# The result is FROM scratch: one static binary, a link to it named
# htpasswd, and the default configuration. docker-compose.yml builds this
# file; scripts/compose-up.sh builds the same image from binaries compiled
# on the host instead, with deploy/Dockerfile.local, whose final stage
# must stay identical to the one below.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /rootfs/usr/bin/flotilla ./cmd/flotilla \
    && ln -s flotilla /rootfs/usr/bin/htpasswd \
    && install -D -m 0644 deploy/config.yml /rootfs/etc/docker/registry/config.yml \
    && mkdir -p /rootfs/var/lib/registry \
    && mkdir -m 1777 /rootfs/tmp

FROM scratch
COPY --from=build /rootfs/ /
# The node starts as root, hands its data folder to FLOTILLA_RUN_AS, copies
# key files that only root can read, and then serves as that user, so a
# bind-mounted data folder and a key of mode 0600 work as with registry:2.
ENV PATH=/usr/bin \
    FLOTILLA_RUN_AS=65532:65532 \
    REGISTRY_CONFIGURATION_PATH=/etc/docker/registry/config.yml
VOLUME ["/var/lib/registry"]
EXPOSE 5000 7000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/bin/flotilla", "healthcheck"]
ENTRYPOINT ["/usr/bin/flotilla"]
CMD ["serve"]
