# syntax=docker/dockerfile:1
# rocketpilot and rocketctl, static, on a distroless base that runs as nonroot (65532).
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" -t ghcr.io/rocketpilot/rocketpilot:dev .

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ ./cmd/rocketpilot ./cmd/rocketctl

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/rocketpilot /rocketpilot
COPY --from=build /out/rocketctl /rocketctl
USER 65532:65532
# xDS (gRPC), admin API, metrics
EXPOSE 18000 19000 19001
ENTRYPOINT ["/rocketpilot"]
