#!/usr/bin/env bash
# Generates throw-away test PKI into DIR (default tests/e2e/work/pki): a CA, the AS server
# certificate (localhost / 127.0.0.1), the sidecar's mTLS transport certificate, a second
# "rogue" client certificate from another CA, and JWS signing keys for PS256, ES256, EdDSA.
# Nothing here is of value; it is regenerated on every test run and never committed.
set -euo pipefail
DIR=${1:-$(dirname "$0")/work/pki}
mkdir -p "$DIR"
cd "$DIR"
umask 077
days=${PKI_DAYS:-2}

ca() { # name subject
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.crt" \
    -subj "$2" -days "$days" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
leaf() { # name subject ca ext...   (LEAF_DAYS overrides the validity, e.g. -1 = expired)
  local name=$1 subj=$2 ca=$3; shift 3
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
  printf '%s\n' "$@" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -out "$name.crt" -days "${LEAF_DAYS:-$days}" -extfile "$name.ext" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

ca ca "/CN=par-sidecar test CA"
ca rogue-ca "/CN=rogue CA"
leaf as "/CN=localhost" ca "subjectAltName=DNS:localhost,IP:127.0.0.1" "extendedKeyUsage=serverAuth"
LEAF_DAYS=-1 leaf as-expired "/CN=localhost" ca "subjectAltName=DNS:localhost,IP:127.0.0.1" "extendedKeyUsage=serverAuth"
leaf as-wronghost "/CN=wrong.example" ca "subjectAltName=DNS:wrong.example" "extendedKeyUsage=serverAuth"
leaf transport "/CN=legacy-app/O=par-sidecar tests" ca "extendedKeyUsage=clientAuth"
leaf transport2 "/CN=legacy-app/O=par-sidecar tests rotated" ca "extendedKeyUsage=clientAuth"
leaf rogue "/CN=legacy-app/O=par-sidecar tests" rogue-ca "extendedKeyUsage=clientAuth"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sign-ps256.pem 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sign-es256.pem 2>/dev/null
openssl genpkey -algorithm ED25519 -out sign-eddsa.pem 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sign-ps256-next.pem 2>/dev/null
echo "$DIR"
