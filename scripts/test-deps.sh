#!/usr/bin/env bash
# What the test suite needs besides the Rust toolchain, installed from the distribution when it
# is missing. `make test` runs this first; `.ci/run` does nothing else to prepare the machine.
#
#   jq                       the hook wrappers' and examples' JSON plumbing in tests
#   nginx-light              tests/nginx.rs: a real web server publishing peer metadata
#   binutils (readelf)       scripts/check-static.sh
#   openssl, curl            a real X.509 verifier and HTTP client for the rotation and serve tests
#   golang-1.23-go           the Go oracles under tests/go/: istiod parses roots with Go's
#                            crypto/x509, and Go >= 1.23 in module mode is what refuses
#                            negative serials (from the distribution's backports suite)
#   golang-k8s-sigs-yaml-dev the YAML parser istiod reads MeshConfig with (sigs.k8s.io/yaml)
#   android-libboringssl-dev the BoringSSL oracle (tests/c/boringssl_roots.c): Envoy loads trusted
#                            roots with BoringSSL; the tests build a small C program against it
#   gcc                      builds that program
#   prometheus (promtool)    `promtool test rules` on deploy/'s alerts
#   kubectl                  `kubectl kustomize deploy`; the machine image ships kubectl 1.32
#                            (kustomize v5). Debian's kubernetes-client is far older, so it is
#                            named, never installed.
#
# As root, missing packages are installed with apt-get. Otherwise the script stops with one
# line naming the command to run.
set -euo pipefail

GO_BIN=/usr/lib/go-1.23/bin/go
need=()
backports=()
command -v jq >/dev/null 2>&1 || need+=(jq)
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v readelf >/dev/null 2>&1 || need+=(binutils)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ -x "$GO_BIN" ] || backports+=(golang-1.23-go)
[ -d /usr/share/gocode/src/sigs.k8s.io/yaml ] || need+=(golang-k8s-sigs-yaml-dev)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
[ -f /usr/include/android/openssl/x509.h ] || need+=(android-libboringssl-dev)
command -v cc >/dev/null 2>&1 || need+=(gcc)

if ! command -v kubectl >/dev/null 2>&1; then
  echo "test-deps: kubectl (with kustomize v5, e.g. kubectl >= 1.27) is not on PATH: install it from https://kubernetes.io/docs/tasks/tools/" >&2
  exit 1
fi

if [ "${#need[@]}" -eq 0 ] && [ "${#backports[@]}" -eq 0 ]; then
  exit 0
fi

# The backports suite of the distribution this machine already uses, derived from its own apt
# sources (no mirror address is written here): "<codename>-backports" at the same URIs.
backports_suite() {
  . /etc/os-release
  echo "${VERSION_CODENAME}-backports"
}

add_backports() {
  local suite list
  suite=$(backports_suite)
  list=/etc/apt/sources.list.d/test-deps-backports.sources
  if grep -rqs "$suite" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return 0
  fi
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    # deb822: copy the stanza that carries the release's own suite, with the suite replaced.
    awk -v c="${suite%-backports}" -v s="$suite" 'BEGIN { RS = ""; ORS = "\n\n" }
      match($0, /(^|\n)Suites:[^\n]*/) && substr($0, RSTART, RLENGTH) ~ ("[ \t]" c "([ \t]|$)") {
        sub(/Suites:[^\n]*/, "Suites: " s); print; exit
      }' /etc/apt/sources.list.d/debian.sources >"$list"
  elif [ -f /etc/apt/sources.list ]; then
    grep -E "^deb [^ ]+ ${suite%-backports} " /etc/apt/sources.list | head -n 1 |
      sed -E "s/ ${suite%-backports} / ${suite} /" >"${list%.sources}.list"
    rm -f "$list"
  fi
}

if [ "$(id -u)" != 0 ]; then
  echo "test-deps: missing ${need[*]} ${backports[*]}: run 'sudo scripts/test-deps.sh' (apt-get install; golang-1.23-go from $(backports_suite))" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if [ "${#backports[@]}" -gt 0 ]; then
  add_backports
fi
apt-get update -qq
if [ "${#need[@]}" -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ "${#backports[@]}" -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends -t "$(backports_suite)" "${backports[@]}" >/dev/null
fi
# nginx-light's package starts a system nginx on port 80; the tests start their own.
if command -v systemctl >/dev/null 2>&1; then systemctl stop nginx >/dev/null 2>&1 || true; fi
if command -v service >/dev/null 2>&1; then service nginx stop >/dev/null 2>&1 || true; fi
# prometheus' package starts a server too; only promtool is used.
if command -v service >/dev/null 2>&1; then service prometheus stop >/dev/null 2>&1 || true; fi
exit 0
