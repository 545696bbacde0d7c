#!/usr/bin/env bash
# Build (or find) kube-apiserver, kube-controller-manager, kubectl, etcd and helm
# from Go modules at the versions pinned in versions.env, cached by version under
# ${KEEPFIX_CACHE:-~/.cache/keepfix}. Prints the folder that holds all five.
#
#   tools/k8s/build.sh             build what is missing, print the bin folder
#   tools/k8s/build.sh --print-dir print the folder without building
#
# Binaries that already exist win: KEEPFIX_K8S_BIN or KUBEBUILDER_ASSETS (the
# envtest convention) naming a folder with them is used as it is.
set -euo pipefail
# One compound command: bash parses it whole before running any of it, so editing
# this file while a (long) build runs cannot derail that build.
{

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${KEEPFIX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keepfix}
bindir="$cache/bin/k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_helm-${HELM_VERSION}"
k8s_dir="$cache/build/kubernetes-${KUBERNETES_VERSION}"
etcd_dir="$cache/build/etcd-${ETCD_VERSION}"
helm_dir="$cache/build/helm-${HELM_VERSION}"
needed=(kube-apiserver kube-controller-manager kubectl etcd helm)

log() { printf 'k8s-bin: %s\n' "$*" >&2; }

has_all() {
  local dir=$1 b
  for b in "${needed[@]}"; do [ -x "$dir/$b" ] || return 1; done
}

for var in KEEPFIX_K8S_BIN KUBEBUILDER_ASSETS; do
  dir=${!var:-}
  if [ -n "$dir" ]; then
    if has_all "$dir"; then echo "$dir"; exit 0; fi
    # envtest assets carry no helm: take the rest from there, helm from PATH/cache.
    if [ -x "$dir/kube-apiserver" ] && [ -x "$dir/etcd" ]; then
      log "$var=$dir lacks some of ${needed[*]}; building the rest into the cache"
    else
      log "$var=$dir does not hold kube-apiserver and etcd; ignoring it"
    fi
  fi
done

if [ "${1:-}" = "--print-dir" ]; then echo "$bindir"; exit 0; fi
if has_all "$bindir"; then echo "$bindir"; exit 0; fi

if ! command -v go >/dev/null 2>&1; then
  cat >&2 <<MSG
k8s-bin: Go is not installed and $bindir does not hold ${needed[*]}.
  Install Go 1.26 or newer (https://go.dev/dl/, or your package manager), or
  point KEEPFIX_K8S_BIN (or KUBEBUILDER_ASSETS) at a folder that holds
  kube-apiserver, kube-controller-manager, kubectl, etcd and helm.
MSG
  exit 1
fi
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

build_kubernetes() {
  local v=$KUBERNETES_VERSION minor major staging gomod
  [ -x "$k8s_dir/kube-apiserver" ] && [ -x "$k8s_dir/kube-controller-manager" ] && [ -x "$k8s_dir/kubectl" ] && return 0
  major=${v#v}; major=${major%%.*}
  minor=${v#v*.}; minor=${minor%%.*}
  staging="v0.${v#v*.}"
  log "building Kubernetes $v (staging modules at $staging); this takes a while the first time"
  local w; w=$(mktemp -d)
  gomod=$(go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module keepfix.dev/tools/k8sbuild"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//; s/\([0-9]*\.[0-9]*\).*/\1/')"
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    echo "replace ("
    # Every k8s.io module kubernetes requires at v0.0.0 is one of its staging
    # folders; the published copy of each is tagged v0.<minor>.<patch>.
    awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print "\t" $1 " => " $1 " '"$staging"'"}' "$gomod"
    echo ")"
  } >"$w/go.mod"
  cat >"$w/tools.go" <<'GO'
//go:build tools

package tools
GO
  local pkg="k8s.io/component-base/version" cg="k8s.io/client-go/pkg/version" date
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ld="-s -w"
  for p in $pkg $cg; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  mkdir -p "$k8s_dir.tmp"
  (cd "$w" && go build -trimpath -ldflags "$ld" -o "$k8s_dir.tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl)
  rm -rf "$k8s_dir" && mv "$k8s_dir.tmp" "$k8s_dir"
  rm -rf "$w"
}

build_etcd() {
  [ -x "$etcd_dir/etcd" ] && return 0
  log "building etcd $ETCD_VERSION"
  local w; w=$(mktemp -d)
  cat >"$w/go.mod" <<GOMOD
module keepfix.dev/tools/etcdbuild

go $(go env GOVERSION | sed 's/^go//; s/\([0-9]*\.[0-9]*\).*/\1/')

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  cat >"$w/main.go" <<'GO'
// Command etcd is etcd's own main, built from the server module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  mkdir -p "$etcd_dir.tmp"
  (cd "$w" && go mod tidy >/dev/null 2>&1 && go build -trimpath -ldflags "-s -w" -o "$etcd_dir.tmp/etcd" .)
  rm -rf "$etcd_dir" && mv "$etcd_dir.tmp" "$etcd_dir"
  rm -rf "$w"
}

build_helm() {
  [ -x "$helm_dir/helm" ] && return 0
  log "building helm $HELM_VERSION"
  local major=${HELM_VERSION%%.*} gomod cg kminor ld
  # Helm's default Kubernetes version (for `helm template` and `helm lint`)
  # comes from link-time variables; stamp the client-go minor Helm was built with.
  gomod=$(go mod download -json "helm.sh/helm/$major@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  cg=$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$gomod")
  kminor=${cg#v0.}; kminor=${kminor%%.*}
  ld="-s -w -X helm.sh/helm/$major/internal/version.version=$HELM_VERSION"
  ld+=" -X helm.sh/helm/$major/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/$major/pkg/chartutil.k8sVersionMinor=$kminor"
  ld+=" -X helm.sh/helm/$major/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/$major/pkg/lint/rules.k8sVersionMinor=$kminor"
  mkdir -p "$helm_dir.tmp"
  GOBIN="$helm_dir.tmp" go install -trimpath -ldflags "$ld" "helm.sh/helm/$major/cmd/helm@$HELM_VERSION"
  rm -rf "$helm_dir" && mv "$helm_dir.tmp" "$helm_dir"
}

build_etcd
build_helm
build_kubernetes

mkdir -p "$bindir"
ln -sf "$k8s_dir/kube-apiserver" "$k8s_dir/kube-controller-manager" "$k8s_dir/kubectl" \
  "$etcd_dir/etcd" "$helm_dir/helm" "$bindir/"
has_all "$bindir" || { log "build finished but $bindir is incomplete"; exit 1; }
log "ready: $bindir"
echo "$bindir"
exit
}
