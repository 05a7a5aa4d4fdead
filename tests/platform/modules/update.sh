#!/usr/bin/env bash
# Regenerates the wrapper modules under tests/platform/modules/ from tests/platform/versions.env.
# Run it after changing a version there, then commit the go.mod/go.sum it writes. Needs the Go
# module proxy; build.sh never runs it (it only checks the modules against versions.env).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../versions.env
. "$here/../versions.env"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local

fresh() { # fresh DIR MODULE: an empty go.mod for the wrapper
  rm -f "$1/go.mod" "$1/go.sum"
  (cd "$1" && go mod init "$2" >/dev/null 2>&1 && go mod edit -go="${GO_VERSION#go}")
}

kube() {
  local d=$here/kube-apiserver mod
  fresh "$d" istio-federation-hook.test/platform/kube-apiserver
  mod=$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod
  [ -f "$mod" ] || (cd "$d" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null)
  # Each staging module k8s.io/kubernetes requires at v0.0.0, replaced by its published release.
  for m in $(awk '$2 == "v0.0.0" && $1 ~ /^k8s.io\// {print $1}' "$mod"); do
    (cd "$d" && go mod edit -replace="$m=$m@$KUBERNETES_STAGING_VERSION")
  done
  (cd "$d" && go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION" && go mod tidy)
}

etcd() {
  local d=$here/etcd
  fresh "$d" istio-federation-hook.test/platform/etcd
  (cd "$d" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go mod tidy)
}

shellop() {
  local d=$here/shell-operator
  fresh "$d" istio-federation-hook.test/platform/shell-operator
  # github.com/deckhouse/module-sdk is not served by the module proxy: module-sdk-shim/ says why.
  (cd "$d" && go mod edit -replace="github.com/go-openapi/validate=$SHELL_OPERATOR_OPENAPI_VALIDATE" &&
    go mod edit -replace=github.com/deckhouse/module-sdk=./module-sdk-shim &&
    go get -tool "github.com/flant/shell-operator/cmd/shell-operator@$SHELL_OPERATOR_VERSION" && go mod tidy)
}

istio() {
  local d=$here/istio
  fresh "$d" istio-federation-hook.test/platform/istio
  (cd "$d" && go get -tool "istio.io/istio/pilot/cmd/pilot-discovery@$ISTIO_VERSION" &&
    go get "istio.io/istio@$ISTIO_VERSION" && go mod tidy)
}

crds() {
  local d=$here/crds
  fresh "$d" istio-federation-hook.test/platform/crds
  (cd "$d" && go get -tool "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_TOOLS_VERSION" &&
    go get "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring@$PROMETHEUS_OPERATOR_APIS_VERSION" &&
    go mod tidy)
}

for c in "${@:-kube etcd shellop istio crds}"; do
  for x in $c; do "$x"; done
done
