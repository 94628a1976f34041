# The pyexec service's own image (not the analytics image that runs user code:
# the service builds that one itself, through the Docker API, at start).
# Always built from source, in two stages:
#
#   docker build -t pyexec .                 # a host that reaches the internet
#   make service-image                       # any host: images/service-image.sh
#
# Build stage: Debian's golang-go and ca-certificates; go.mod asks for a newer
# Go than Debian ships, so GOTOOLCHAIN=auto fetches that toolchain through the
# Go module proxy, and `go mod download` the modules. Needs Debian's mirrors
# and GOPROXY (build args: GOPROXY, GOSUMDB; HTTP_PROXY/HTTPS_PROXY/NO_PROXY
# are Docker's predefined build args).
#
# Behind a TLS-intercepting proxy (a corporate egress proxy), the build
# container must trust the proxy's CA: pass it, PEM text, one or several
# certificates, as EXTRA_CA_CERTS:
#
#   docker build --build-arg EXTRA_CA_CERTS="$(cat /usr/local/share/ca-certificates/*.crt)" -t pyexec .
#
# (make service-image does that with the host's extra CAs). They are installed
# with update-ca-certificates in the build stage only: the final image copies
# Debian's own bundle from before they were added, so it never trusts the
# build host's proxy. The service makes no outbound TLS connection but to a
# remote engine, whose CA it is given explicitly (DOCKER_CERT_PATH).
#
# The build stage starts from debian:trixie-slim, which images/base.sh makes
# with debootstrap where no registry answers. The final image is FROM scratch
# by default: the static binary, Debian's CA bundle and /tmp, about 21 MB (the
# service needs no shell, no libc and no files of the OS). For a shell in it
# (debugging), build it on Debian instead:
#
#   docker build --build-arg RUNTIME_BASE=debian:trixie-slim -t pyexec .
#
# No BuildKit-only syntax: the legacy builder (Docker 20.10's default,
# docker-compose v1) and BuildKit both build it.
#
# Run it with the engine's socket mounted (that is root on the host, see
# compose/README.md):
#
#   docker run -d -p 8000:8000 -v /var/run/docker.sock:/var/run/docker.sock \
#     -e SERVICE_ID=pyexec-1 pyexec

ARG RUNTIME_BASE=scratch

FROM debian:trixie-slim AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends golang-go ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# The final image's files but the binary: Debian's CA bundle, /tmp.
RUN mkdir -p /out/rootfs/etc/ssl/certs /out/rootfs/usr/local/bin /out/rootfs/tmp \
 && chmod 1777 /out/rootfs/tmp \
 && cp /etc/ssl/certs/ca-certificates.crt /out/rootfs/etc/ssl/certs/ca-certificates.crt
# Extra CAs (PEM text): for this stage only, after /out got Debian's bundle.
ARG EXTRA_CA_CERTS=
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
      printf '%s\n' "$EXTRA_CA_CERTS" > /tmp/extra.pem \
      && grep -q 'BEGIN CERTIFICATE' /tmp/extra.pem \
      || { echo "EXTRA_CA_CERTS holds no PEM certificate" >&2; exit 1; }; \
      awk 'BEGIN{n=0} /BEGIN CERTIFICATE/{n++; f=sprintf("/usr/local/share/ca-certificates/extra-%02d.crt", n)} f{print > f} /END CERTIFICATE/{f=""}' /tmp/extra.pem \
      && rm /tmp/extra.pem \
      && update-ca-certificates; \
    fi
ARG GOPROXY=https://proxy.golang.org,direct
ARG GOSUMDB=sum.golang.org
ENV GOPROXY=${GOPROXY} \
    GOSUMDB=${GOSUMDB} \
    GOTOOLCHAIN=auto \
    GOFLAGS=-mod=mod \
    CGO_ENABLED=0 \
    GOPATH=/go \
    PATH=/go/bin:/usr/lib/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /src
# The toolchain go.mod asks for, and the modules, in their own layer: code
# edits do not download them again.
COPY go.mod go.sum ./
RUN go version && go mod download
COPY . .
RUN go build -trimpath -buildvcs=false -ldflags='-s -w' -o /out/rootfs/usr/local/bin/pyexec ./cmd/pyexec

FROM ${RUNTIME_BASE}
# /usr/local/bin/pyexec, Debian's CA bundle (without the extra CAs) for the
# Go TLS client, and /tmp.
COPY --from=build /out/rootfs/ /
ENV PORT=8000
EXPOSE 8000
# The binary asks its own GET /livez (the image has no curl): the process
# serves. It never asks the engine, so an engine blip does not make the
# container unhealthy; load balancers use GET /readyz for that.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/pyexec", "-healthcheck"]
# Root by default: the service is useless without the engine's socket, and
# whoever can use that socket is root on the host anyway. To drop in-container
# root, run with --user 65532:65532 --group-add <gid of the socket>.
ENTRYPOINT ["/usr/local/bin/pyexec"]
