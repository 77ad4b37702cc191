#!/bin/sh
# Installs the Node.js side of the interop tests: ali-ons, exactly as pinned by node/package-lock.json.
# `make test-interop` runs this before `go test`. It needs the npm registry (no offline cache is assumed).
# Without node the Go test TestAliOns* is skipped locally and fails when CI is set; this script only warns.
set -eu
cd "$(dirname "$0")/node"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "test/interop/setup.sh: node or npm not on PATH; the ali-ons interop test cannot run" >&2
	exit 0
fi
echo "test/interop/setup.sh: node $(node --version), npm $(npm --version): npm ci in test/interop/node"
npm ci --ignore-scripts --no-audit --no-fund
