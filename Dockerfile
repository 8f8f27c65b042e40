# foxproxy: one static binary next to Postfix.
# Build: docker build -t foxproxy .
# Run: deploy/compose.yaml runs it and Postfix as two containers on a network
# of their own, which deploy/foxproxy.docker.yaml is written for; or mount
# your own /etc/foxproxy/foxproxy.yaml.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# /out/state becomes the image's /var/lib/foxproxy. The check of the
# configuration needs its spool.dir to exist here too.
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/foxproxy/foxproxy/delivery.Version=${VERSION}" \
      -o /out/foxproxy ./cmd/foxproxy \
 && mkdir -p /var/lib/foxproxy /out/state \
 && mkdir -m 0700 /out/state/quarantine \
 && /out/foxproxy check-config -config /src/deploy/foxproxy.docker.yaml

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/foxproxy /usr/local/bin/foxproxy
COPY deploy/foxproxy.docker.yaml /etc/foxproxy/foxproxy.yaml
# State (the quarantine, spill files) belongs to the user foxproxy runs as:
# distroless's nonroot, UID and GID 65532. A new volume starts as a copy of
# this directory, ownership included, so it is writable without a chown.
COPY --from=build --chown=65532:65532 /out/state /var/lib/foxproxy
VOLUME ["/var/lib/foxproxy"]
USER 65532:65532
# SMTP from Postfix; admin: /healthz, /readyz, /metrics, /status (the last
# messages only to clients inside the container: see admin_listen).
EXPOSE 10025 10080
# The binary asks its own /readyz: a static image has no curl.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/foxproxy", "healthcheck", "-admin", "http://127.0.0.1:10080"]
ENTRYPOINT ["/usr/local/bin/foxproxy"]
CMD ["-config", "/etc/foxproxy/foxproxy.yaml"]
