#!/bin/sh
# Runs the discovery hook once on the bundled demo snapshot and prints the object patches it
# would hand shell-operator. The clock is pinned so the demo certificates are valid.
set -eu
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/release/istio-federation-hook"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
: > "$out/patches" ; : > "$out/metrics"
echo "== istio-federation-hook --config (first binding)"
"$bin" --config | head -c 300; echo " ..."
echo
echo "== one discovery run over the demo snapshot (4 IstioFederations, cached metadata)"
ISTIO_FEDERATION_ENABLED=true CLUSTER_DOMAIN=my.cluster CLUSTER_UUID=deadbeef-mycluster \
ISTIO_FEDERATION_HOOK_NOW=2027-01-01T00:00:00Z LOG_LEVEL=error \
BINDING_CONTEXT_PATH=testdata/demo/binding-context.json \
KUBERNETES_PATCH_PATH="$out/patches" METRICS_PATH="$out/metrics" "$bin"
if command -v jq >/dev/null 2>&1; then
  jq -c 'if .operation == "CreateOrUpdate" then {operation, kind: .object.kind, name: .object.metadata.name, spec: .object.spec}
         elif .operation == "JSONPatch" then {operation, kind, name, ops: [.jsonPatch[] | {op, path}]}
         else {operation, kind, name, status: .mergePatch.status.conditions} end' "$out/patches"
else
  cat "$out/patches"
fi
echo
echo "== $(wc -l < "$out/patches") object patches, $(wc -l < "$out/metrics") metric operations"
