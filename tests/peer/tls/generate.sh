#!/usr/bin/env bash
# Regenerates the TLS test fixtures in this directory with the openssl CLI:
#
#   ca.pem                      a test CA (the root the tests configure)
#   server.pem, server.key      signed by it, for localhost and 127.0.0.1
#   wrong-host.pem, wrong-host.key  signed by it, only for wrong.example
#
# Everything is valid for 100 years, so the fixtures are committed rather than made
# at test time. The CA's private key is deleted at the end: nothing can be signed with
# this CA again, and rerunning the script makes a new CA and new certificates.
# P-256 ECDSA keys, which both rustls and OpenSSL (native-tls) accept.
set -euo pipefail
cd "$(dirname "$0")"

DAYS=36525
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

key "$work/ca.key"
openssl req -x509 -new -key "$work/ca.key" -sha256 -days "$DAYS" \
  -subj "/CN=logto-m2m test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" \
  -out ca.pem

# leaf NAME CN SAN
leaf() {
  local name="$1" cn="$2" san="$3"
  key "$name.key"
  openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$work/$name.csr"
  cat >"$work/$name.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
  openssl x509 -req -in "$work/$name.csr" -CA ca.pem -CAkey "$work/ca.key" -sha256 \
    -set_serial "0x$(openssl rand -hex 16)" -days "$DAYS" \
    -extfile "$work/$name.ext" -out "$name.pem"
  chmod 644 "$name.key"
}

leaf server localhost "DNS:localhost,IP:127.0.0.1"
leaf wrong-host wrong.example "DNS:wrong.example"

for c in server wrong-host; do openssl verify -CAfile ca.pem "$c.pem"; done
