#!/bin/sh
# Regenerates the certificates the golden cases use. The golden runs pin the clock to
# 2027-01-01T00:00:00Z (ISTIO_FEDERATION_HOOK_NOW), so these were made in late 2026:
# long-lived roots stay valid, "expired" has a 1-day life, "expiring" ends within 30 days
# of the pinned clock. Regenerating changes every golden file that embeds a certificate:
# run `UPDATE_GOLDEN=1 make test` afterwards and review the diff by hand.
set -eu
cd "$(dirname "$0")"
ca() { # name subject days
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
    -days "$3" -subj "$2" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$1.pem" 2>/dev/null
}
ca peer-b-root "/O=cluster-b/CN=Peer B Root CA" 7300
ca peer-b-root-2 "/O=cluster-b/CN=Peer B Root CA 2" 7300
ca peer-c-root "/O=cluster-c/CN=Peer C Root CA" 7300
ca local-root "/O=my-cluster/CN=Local Root CA" 7300
ca expired-root "/O=cluster-x/CN=Expired Root CA" 1
ca expiring-root "/O=cluster-x/CN=Expiring Root CA" 50
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
  -days 7300 -subj "/CN=leaf.example" -addext "basicConstraints=critical,CA:FALSE" -out leaf.pem 2>/dev/null
for peer in b c; do
  openssl genpkey -algorithm ed25519 -out "peer-$peer-authn-priv.pem"
  openssl pkey -in "peer-$peer-authn-priv.pem" -pubout -out "peer-$peer-authn-pub.pem"
done
