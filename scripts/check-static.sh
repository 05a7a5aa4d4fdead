#!/usr/bin/env bash
# Builds `make static` and checks the result is what the image needs: an ELF executable with no
# program interpreter and no shared-library dependencies, that runs on its own (prints a valid
# --config and answers --version).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(make --no-print-directory static | tail -n 1)
[ -x "$bin" ] || { echo "check-static: $bin is not an executable" >&2; exit 1; }

if readelf -l "$bin" | grep -q 'INTERP'; then
  echo "check-static: $bin asks for a program interpreter (dynamically linked):" >&2
  readelf -l "$bin" | grep -A1 INTERP >&2
  exit 1
fi
if readelf -d "$bin" 2>/dev/null | grep -q 'NEEDED'; then
  echo "check-static: $bin needs shared libraries:" >&2
  readelf -d "$bin" | grep NEEDED >&2
  exit 1
fi
# Runs without any environment, as the first thing shell-operator does with it.
env -i "$bin" --config | jq -e '.configVersion == "v1" and (.kubernetes | length) > 0' >/dev/null \
  || { echo "check-static: $bin --config did not print a valid config" >&2; exit 1; }
env -i "$bin" --version | grep -q '^istio-federation-hook ' \
  || { echo "check-static: $bin --version failed" >&2; exit 1; }
echo "check-static: $bin is static ($(stat -c %s "$bin") bytes) and runs"
