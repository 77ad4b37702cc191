#!/usr/bin/env bash
# envtest-assets.sh: prints a folder holding kube-apiserver and etcd for controller-runtime's envtest
# (KUBEBUILDER_ASSETS), building them from the Go module proxy the first time and caching them by version.
#
#   export KUBEBUILDER_ASSETS="$(hack/envtest-assets.sh)"
#
# Nothing is downloaded but Go modules. kube-apiserver is built from k8s.io/kubernetes in a scratch module whose
# replace lines point kubernetes' ./staging modules at their published versions (about 12 min on 2 cores, once);
# etcd from go.etcd.io/etcd/server/v3 in another scratch module (about 1.5 min). Progress goes to stderr.
set -euo pipefail

KUBE_VERSION="${ENVTEST_KUBE_VERSION:-1.37.2}"
ETCD_VERSION="${ENVTEST_ETCD_VERSION:-3.6.16}"
STAGING_VERSION="0.${KUBE_VERSION#1.}" # k8s.io/kubernetes v1.37.2 ships its staging modules as v0.37.2
CACHE="${ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rocketpilot/envtest}"
DIR="$CACHE/kube-$KUBE_VERSION-etcd-$ETCD_VERSION"
GO="${GO:-go}"

if [[ -x "$DIR/kube-apiserver" && -x "$DIR/etcd" ]]; then
  echo "$DIR"
  exit 0
fi
mkdir -p "$DIR"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ ! -x "$DIR/etcd" ]]; then
  echo "envtest-assets: building etcd v$ETCD_VERSION (once per machine)" >&2
  mkdir -p "$work/etcd"
  (
    cd "$work/etcd"
    "$GO" mod init envtest/etcd >/dev/null 2>&1
    "$GO" get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >&2
    CGO_ENABLED=0 "$GO" build -trimpath -o "$DIR/etcd.tmp" go.etcd.io/etcd/server/v3 >&2
  )
  mv "$DIR/etcd.tmp" "$DIR/etcd"
fi

if [[ ! -x "$DIR/kube-apiserver" ]]; then
  echo "envtest-assets: building kube-apiserver v$KUBE_VERSION (once per machine, about 12 minutes on 2 cores)" >&2
  mkdir -p "$work/kube"
  (
    cd "$work/kube"
    "$GO" mod init envtest/kube >/dev/null 2>&1
    # kubernetes' go.mod replaces every staging module with ./staging/src/k8s.io/NAME, which only exists in its
    # own tree: point each at the published module of the same release instead.
    gomod="$("$GO" mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
    [[ -f "$gomod" ]] || { echo "envtest-assets: no go.mod for k8s.io/kubernetes v$KUBE_VERSION" >&2; exit 1; }
    staging="$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9.-]*\) => ./staging/src/.*#\1#p' "$gomod" | sort -u)"
    [[ -n "$staging" ]] || { echo "envtest-assets: found no staging replaces in $gomod" >&2; exit 1; }
    {
      echo
      echo "require k8s.io/kubernetes v$KUBE_VERSION"
      for m in $staging; do echo "replace $m => $m v$STAGING_VERSION"; done
    } >>go.mod
    "$GO" get "k8s.io/kubernetes/cmd/kube-apiserver@v$KUBE_VERSION" >&2
    CGO_ENABLED=0 "$GO" build -trimpath -o "$DIR/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver >&2
  )
  mv "$DIR/kube-apiserver.tmp" "$DIR/kube-apiserver"
fi
echo "$DIR"
