#!/usr/bin/env bash
# helm.sh: prints the path of a helm binary, building it from the Go module proxy the first time and caching it
# by version (about 2 minutes on 2 cores, once per machine). Nothing is downloaded but Go modules.
#
#   "$(hack/helm.sh)" lint charts/rocketpilot
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-3.22.0}"
CACHE="${HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rocketpilot/helm}"
BIN="$CACHE/v$HELM_VERSION/helm"
GO="${GO:-go}"

if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi
echo "helm.sh: building helm v$HELM_VERSION (once per machine)" >&2
mkdir -p "$(dirname "$BIN")"
GOBIN="$(dirname "$BIN")" CGO_ENABLED=0 "$GO" install -trimpath "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" >&2
echo "$BIN"
