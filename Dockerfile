# syntax=docker/dockerfile:1
# paystream's worker, starter and simulator: static binaries on a
# distroless, non-root image with no shell. The entrypoint is the worker;
# run the others with --entrypoint /usr/local/bin/starter (or simulator).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The image has no .git to read: --version says what these name
# (docker build --build-arg VERSION=$(git describe --tags --always)
# --build-arg COMMIT=$(git rev-parse HEAD); `make image` passes both).
ARG VERSION=
ARG COMMIT=
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/paystream/paystream/internal/config.version=${VERSION} -X github.com/paystream/paystream/internal/config.commit=${COMMIT}" -o /out/ ./worker ./starter ./simulator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
# /healthz, /readyz, /metrics (PAYSTREAM_HTTP_ADDR=:8080)
EXPOSE 8080
ENV PAYSTREAM_HTTP_ADDR=:8080
ENTRYPOINT ["/usr/local/bin/worker"]
