#!/bin/sh
# Makes the compose stack's demo certificate (docker-compose.yml, service
# tls-init; runs in an alpine image): a local CA and a certificate for
# localhost signed by it, written once into the tls volume (mounted at
# /tls). The seed job loads cert.pem and key.pem through the admin API;
# clients trust ca.pem:
#
#   docker compose run --rm --entrypoint cat tls-init /tls/ca.pem > portico-ca.pem
#   curl --cacert portico-ca.pem https://localhost:8443/public/hello
#
# Replace it with a real certificate by PUTting one to /v1/certificates/demo
# (or under another name, and --tls-default-cert to match).
set -eu
cd /tls
# pebble_cert: the HTTPS certificate of the stack's ACME server (service
# pebble, DNS name pebble), signed by the same CA, which the seeded ACME
# certificate trusts through acme.ca.
pebble_cert() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout pebble-key.pem -out pebble.csr -subj "/CN=pebble"
  printf 'subjectAltName=DNS:pebble\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >pebble.ext
  openssl x509 -req -in pebble.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 397 -extfile pebble.ext -out pebble-cert.pem
  rm -f pebble.csr pebble.ext
  # Read by pebble (root in a scratch image) only: the volume is mounted
  # into tls-init, seed and pebble.
  chmod 644 pebble-cert.pem pebble-key.pem
}
if [ -f cert.pem ] && [ -f key.pem ] && [ -f ca.pem ]; then
  if [ ! -f pebble-cert.pem ]; then
    apk add --no-cache openssl >/dev/null
    umask 077
    pebble_cert
    echo "tls-init: made a certificate for the ACME server pebble" >&2
  fi
  echo "tls-init: keeping the certificate in the tls volume" >&2
  exit 0
fi
apk add --no-cache openssl >/dev/null
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
  -days 3650 -subj "/CN=Portico compose demo CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out leaf.csr -subj "/CN=localhost"
printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >leaf.ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 397 -extfile leaf.ext -out cert.pem
rm -f leaf.csr leaf.ext
# The seed job reads key.pem as a non-root user (the curl image's); the
# volume is mounted only into tls-init and seed. ca.key stays 0600.
chmod 644 ca.pem cert.pem key.pem
pebble_cert
echo "tls-init: made a CA (tls volume: ca.pem), a certificate for localhost and one for pebble" >&2
