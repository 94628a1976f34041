# The pyexec service's own image (not the analytics image that runs user code:
# the service builds that one itself, through the Docker API, at start).
#
#   docker build -t pyexec .                              # compile inside Docker
#   CGO_ENABLED=0 go build -o bin/pyexec ./cmd/pyexec \
#     && docker build --build-arg PYEXEC_BINARY=host -t pyexec .   # copy a host binary
#
# PYEXEC_BINARY=source (default) installs Debian's golang-go in the build stage
# and, since go.mod may ask for a newer Go than Debian ships, lets it fetch the
# required toolchain through the module proxy (GOTOOLCHAIN=auto). Needs Debian's
# mirrors and the Go module proxy (and a proxy.golang.org certificate the build
# container trusts: a TLS-intercepting egress proxy breaks it). PYEXEC_BINARY=host
# needs neither: it copies PYEXEC_HOST_BINARY (default bin/pyexec, the path
# `make build` writes; .dockerignore lets bin/pyexec and bin/pyexec-compose
# through) from the build context. Build it with CGO_ENABLED=0 for a static
# binary; a glibc-linked one from Debian 12 or later also runs.
#
# Both stages start from debian:trixie-slim, which images/base.sh makes with
# debootstrap where no registry answers. The Dockerfile avoids BuildKit-only
# syntax so that the legacy builder (Docker 20.10, docker-compose v1) builds it.
#
# Run it with the engine's socket mounted (it is root on the host, see
# compose/README.md):
#
#   docker run -d -p 8000:8000 -v /var/run/docker.sock:/var/run/docker.sock \
#     -e SERVICE_ID=pyexec-1 pyexec

FROM debian:trixie-slim AS build
ARG PYEXEC_BINARY=source
ARG PYEXEC_HOST_BINARY=bin/pyexec
ARG GOPROXY=https://proxy.golang.org,direct
ARG GOTOOLCHAIN=auto
ENV DEBIAN_FRONTEND=noninteractive \
    GOPROXY=${GOPROXY} \
    GOTOOLCHAIN=${GOTOOLCHAIN} \
    GOFLAGS=-mod=mod \
    CGO_ENABLED=0 \
    GOPATH=/go \
    PATH=/go/bin:/usr/lib/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN case "$PYEXEC_BINARY" in \
      source) apt-get update \
        && apt-get install -y --no-install-recommends golang-go ca-certificates \
        && rm -rf /var/lib/apt/lists/* ;; \
      host) ;; \
      *) echo "PYEXEC_BINARY must be source or host, not '$PYEXEC_BINARY'" >&2; exit 1 ;; \
    esac
WORKDIR /src
# Modules first, in their own layer, so code edits do not download them again.
COPY go.mod go.sum ./
RUN if [ "$PYEXEC_BINARY" = source ]; then go version && go mod download; fi
COPY . .
RUN mkdir -p /out \
 && if [ "$PYEXEC_BINARY" = source ]; then \
      go build -trimpath -buildvcs=false -ldflags='-s -w' -o /out/pyexec ./cmd/pyexec; \
    else \
      test -x "$PYEXEC_HOST_BINARY" || { echo "PYEXEC_BINARY=host: $PYEXEC_HOST_BINARY missing; run: CGO_ENABLED=0 go build -o $PYEXEC_HOST_BINARY ./cmd/pyexec" >&2; exit 1; }; \
      cp "$PYEXEC_HOST_BINARY" /out/pyexec; \
    fi

FROM debian:trixie-slim
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/*
COPY --from=build /out/pyexec /usr/local/bin/pyexec
ENV PORT=8000
EXPOSE 8000
# No HEALTHCHECK here: the image has no HTTP client. compose/docker-compose.yml
# checks GET /health with bash's /dev/tcp instead.
# Root by default: the service is useless without the engine's socket, and
# whoever can use that socket is root on the host anyway. To drop in-container
# root, run with --user 65532:65532 --group-add <gid of the socket>.
ENTRYPOINT ["/usr/local/bin/pyexec"]
