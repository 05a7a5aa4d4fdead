#!/usr/bin/env bash
# Builds the real platform the suite in tests/platform.rs runs: kube-apiserver, etcd,
# shell-operator, istiod (pilot-discovery) and an xDS client, each from the Go module and version
# pinned in tests/platform/versions.env, through the wrapper modules in tests/platform/modules/.
#
#   tests/platform/build.sh         build what is missing, one line per component on stdout
#   tests/platform/build.sh --dir   print the directory the binaries are (or would be) in
#
# Each component is built once into ${XDG_CACHE_HOME:-$HOME/.cache}/istio-federation-hook/platform/
# components/<name>-<key>/, where <key> hashes what that component is built from: its wrapper
# module's go.mod and go.sum, its own Go files, the package, the build flags and `go version`. So
# a new istio pin rebuilds istiod and the xDS client, not kube-apiserver. The suite reads the
# set <root>/<set key>/ (bin/<name> links to the components, plus the CRDs), where <set key>
# hashes versions.env, every wrapper module and `go version`: a fresh clone on a warm machine
# rebuilds nothing.
# Exits non-zero naming module@version and the compiler's last lines when a build fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
export GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -mod=readonly" CGO_ENABLED=0
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
if ! "$GO" version >/dev/null 2>&1; then
  echo "platform: no Go toolchain (looked for 'go' on PATH and /usr/local/go/bin/go); install $GO_VERSION" >&2
  exit 1
fi

key=$(
  cd "$here"
  {
    cat versions.env
    find modules -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) | LC_ALL=C sort |
      while read -r f; do echo "== $f"; cat "$f"; done
    "$GO" version
  } | sha256sum | cut -c1-16
)
root=${XDG_CACHE_HOME:-$HOME/.cache}/istio-federation-hook/platform
dir=$root/$key
if [ "${1:-}" = "--dir" ]; then
  echo "$dir"
  exit 0
fi

# The wrapper modules must require exactly what versions.env pins.
pinned() { # pinned MODULE_DIR MODULE VERSION
  local got
  got=$(cd "$here/modules/$1" && "$GO" list -m -f '{{.Version}}' "$2" 2>/dev/null || true)
  if [ "$got" != "$3" ]; then
    echo "platform: tests/platform/modules/$1 requires $2 ${got:-(nothing)}, versions.env pins $3: run tests/platform/modules/update.sh" >&2
    exit 1
  fi
}
pinned kube-apiserver k8s.io/kubernetes "$KUBERNETES_VERSION"
pinned kube-apiserver k8s.io/apiserver "$KUBERNETES_STAGING_VERSION"
pinned etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
pinned shell-operator github.com/flant/shell-operator "$SHELL_OPERATOR_VERSION"
pinned istio istio.io/istio "$ISTIO_VERSION"
pinned crds sigs.k8s.io/controller-tools "$CONTROLLER_TOOLS_VERSION"
pinned crds github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring "$PROMETHEUS_OPERATOR_APIS_VERSION"

mkdir -p "$dir/bin" "$dir/logs"
exec 9>"$dir/.lock"
flock 9

BUILD_FLAGS=(-trimpath -ldflags=-s)

# component_key MODULE_DIR PACKAGE: what one component is built from. The Go files counted are
# the package's own when it is local (./x), the module root's when it is ".", and those of the
# module's local replacements (a directory with its own go.mod); a package from a required
# module is pinned by go.mod/go.sum alone.
component_key() {
  local mdir=$1 pkg=$2
  (
    cd "$here/modules/$mdir"
    {
      cat go.mod go.sum 2>/dev/null
      case $pkg in
        .) find . -maxdepth 1 -name '*.go' ;;
        ./*) find "$pkg" -name '*.go' ;;
      esac
      find . -mindepth 2 -name go.mod -printf '%h\n' | while read -r rep; do
        find "$rep" -type f \( -name go.mod -o -name go.sum -o -name '*.go' \)
      done
    } | LC_ALL=C sort -u | while read -r f; do
      if [ -f "$f" ]; then echo "== $f"; cat "$f"; else echo "$f"; fi
    done
    echo "package $pkg flags ${BUILD_FLAGS[*]} $CGO_ENABLED $GOFLAGS"
    "$GO" version
  ) | sha256sum | cut -c1-16
}

build() { # build NAME MODULE_DIR PACKAGE MODULE@VERSION
  local name=$1 mdir=$2 pkg=$3 what=$4 state=cached
  local cdir
  cdir=$root/components/$name-$(component_key "$mdir" "$pkg")
  local log=$cdir/build.log
  mkdir -p "$cdir"
  # A set directory from before per-component caching holds the binary itself, built from
  # exactly these module files (the set key covers them all): keep it.
  if [ ! -x "$cdir/$name" ] && [ -f "$dir/bin/$name" ] && [ ! -L "$dir/bin/$name" ]; then
    mv "$dir/bin/$name" "$cdir/$name"
  fi
  if [ ! -x "$cdir/$name" ]; then
    state=built
    local t0=$SECONDS
    if ! (cd "$here/modules/$mdir" && "$GO" build "${BUILD_FLAGS[@]}" -o "$cdir/$name.tmp" "$pkg") >"$log" 2>&1; then
      echo "platform: FAILED to build $name from $what (go build $pkg in tests/platform/modules/$mdir):" >&2
      tail -n 25 "$log" >&2
      exit 1
    fi
    mv "$cdir/$name.tmp" "$cdir/$name"
    state="built in $((SECONDS - t0))s"
  fi
  ln -sfn "$cdir/$name" "$dir/bin/$name"
  echo "platform: $name ${what/@/ } ($state)"
}

build etcd etcd . "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
build kube-apiserver kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "k8s.io/kubernetes@$KUBERNETES_VERSION"
# Istio's own CRDs, as its base chart installs them, from the same module istiod is built from.
if [ ! -s "$dir/istio-crds.yaml" ]; then
  # `go list -m` names the module's directory only once it is downloaded (a cold machine).
  if ! (cd "$here/modules/istio" && "$GO" mod download istio.io/istio) >"$dir/logs/istio-download.log" 2>&1; then
    echo "platform: FAILED to download istio.io/istio@$ISTIO_VERSION:" >&2
    tail -n 25 "$dir/logs/istio-download.log" >&2
    exit 1
  fi
  src=$(cd "$here/modules/istio" && "$GO" list -m -f '{{.Dir}}' istio.io/istio)/manifests/charts/base/files/crd-all.gen.yaml
  if [ ! -s "$src" ]; then
    echo "platform: FAILED: istio.io/istio@$ISTIO_VERSION has no $src" >&2
    exit 1
  fi
  cp "$src" "$dir/istio-crds.yaml.tmp" && mv "$dir/istio-crds.yaml.tmp" "$dir/istio-crds.yaml"
fi
# The PrometheusRule CRD (deploy/base/alerts.yaml), generated from prometheus-operator's API types.
build controller-gen crds sigs.k8s.io/controller-tools/cmd/controller-gen \
  "sigs.k8s.io/controller-tools@$CONTROLLER_TOOLS_VERSION"
if [ ! -s "$dir/prometheusrule-crd.yaml" ]; then
  rm -rf "$dir/crd-gen"
  if ! (cd "$here/modules/crds" && "$dir/bin/controller-gen" crd:crdVersions=v1 \
    paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 \
    output:crd:dir="$dir/crd-gen") >"$dir/logs/crd-gen.log" 2>&1; then
    echo "platform: FAILED to generate the PrometheusRule CRD from github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring@$PROMETHEUS_OPERATOR_APIS_VERSION:" >&2
    tail -n 25 "$dir/logs/crd-gen.log" >&2
    exit 1
  fi
  cp "$dir/crd-gen/monitoring.coreos.com_prometheusrules.yaml" "$dir/prometheusrule-crd.yaml"
fi
echo "platform: PrometheusRule CRD github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring $PROMETHEUS_OPERATOR_APIS_VERSION"
build shell-operator shell-operator github.com/flant/shell-operator/cmd/shell-operator \
  "github.com/flant/shell-operator@$SHELL_OPERATOR_VERSION"
build istiod istio istio.io/istio/pilot/cmd/pilot-discovery "istio.io/istio@$ISTIO_VERSION"
build xdsclient istio ./xdsclient "istio.io/istio@$ISTIO_VERSION"

cp "$here/versions.env" "$dir/versions.env"
echo "platform: binaries in $dir"
