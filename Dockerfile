# foxproxy: one static binary next to Postfix.
# Build: docker build -t foxproxy .
# Run as a sidecar sharing the MTA's network namespace (a pod, or
# --network container:postfix), so 127.0.0.1:10026 is Postfix's re-injection
# smtpd; or mount your own /etc/foxproxy/foxproxy.yaml.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/foxproxy/foxproxy/delivery.Version=${VERSION}" \
      -o /out/foxproxy ./cmd/foxproxy \
 && /out/foxproxy check-config -config /src/deploy/foxproxy.docker.yaml

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/foxproxy /usr/local/bin/foxproxy
COPY deploy/foxproxy.docker.yaml /etc/foxproxy/foxproxy.yaml
USER nonroot:nonroot
# SMTP from Postfix; admin: /metrics, /status, /healthz, /readyz.
EXPOSE 10025 10080
# The binary asks its own /readyz: a static image has no curl.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/foxproxy", "healthcheck", "-admin", "http://127.0.0.1:10080"]
ENTRYPOINT ["/usr/local/bin/foxproxy"]
CMD ["-config", "/etc/foxproxy/foxproxy.yaml"]
