#!/bin/sh
# Loads the demo configuration through the admin API (docker-compose.yml,
# service seed; runs in the curl image, so POSIX sh and curl only).
#
# Every object is written with PUT and its full spec, and an unchanged spec is
# a no-op for the control plane (same version, no new revision): running this
# again, as every `docker compose up` does, changes nothing. The same holds
# for alice's API key when one is given (PORTICO_DEMO_API_KEY[_FILE], the key
# secrets-init generated): it is imported, and importing it again is a no-op.
# Without one, a key is created only while alice has none (a key is shown
# only when created).
#
# Each secret comes from its variable or, in compose, from the file its
# *_FILE variable names (the secrets volume).
set -eu

# from_file VAR: sets VAR from the file named by VAR_FILE when VAR is unset.
from_file() {
  eval "_file=\${${1}_FILE:-} _val=\${${1}:-}"
  if [ -z "${_val}" ] && [ -n "${_file}" ]; then
    _val="$(cat "${_file}")" || { echo "seed: cannot read ${1}_FILE=${_file}" >&2; exit 1; }
    eval "${1}=\${_val}"
  fi
}
from_file PORTICO_ADMIN_TOKEN
from_file PORTICO_JWT_SECRET
from_file PORTICO_DEMO_API_KEY

: "${PORTICO_URL:?}" "${PORTICO_ADMIN_TOKEN:?}" "${PORTICO_JWT_SECRET:?}"

# The secret is written into JSON below without escaping, so it must not
# contain quotes or backslashes; hex or base64 (openssl rand) never does.
case "${PORTICO_JWT_SECRET}" in
*[!A-Za-z0-9+/=._~-]*)
  echo "seed: PORTICO_JWT_SECRET may only contain letters, digits and + / = . _ ~ - (use openssl rand -hex 32)" >&2
  exit 1
  ;;
esac
if [ "${#PORTICO_JWT_SECRET}" -lt 32 ]; then
  echo "seed: PORTICO_JWT_SECRET must be at least 32 characters (HS256 keys are refused below 32 bytes)" >&2
  exit 1
fi

out="$(mktemp)"
trap 'rm -f "$out"' EXIT

# call METHOD PATH: sends stdin as the JSON body when METHOD is PUT or POST,
# fails the job (printing the problem+json answer) on anything but 2xx.
call() {
  if [ "$1" = PUT ] || [ "$1" = POST ]; then
    set -- "$@" -H 'Content-Type: application/json' --data-binary @-
  fi
  method=$1 path=$2
  shift 2
  code="$(curl -sS -o "$out" -w '%{http_code}' -X "$method" \
    -H "Authorization: Bearer ${PORTICO_ADMIN_TOKEN}" -H 'X-Portico-Actor: compose-seed' \
    "$@" "${PORTICO_URL}${path}")"
  case "$code" in
  2??) echo "seed: $method $path -> $code" >&2 ;;
  *)
    echo "seed: $method $path -> $code" >&2
    cat "$out" >&2
    echo >&2
    exit 1
    ;;
  esac
}

# Services: the passing instances of the Consul services the demo containers
# register, restricted to the v1 tag.
call PUT /v1/services/users <<'EOF'
{"consul":{"service":"users","tags":["v1"]},"load_balancer":"round_robin",
 "connect_timeout":"1s","timeout":"5s"}
EOF
call PUT /v1/services/orders <<'EOF'
{"consul":{"service":"orders","tags":["v1"]},"load_balancer":"least_request",
 "connect_timeout":"1s","timeout":"5s"}
EOF

# HS256 issuer: tokens signed with PORTICO_JWT_SECRET, iss "portico-demo",
# aud "portico"; "sub" names the consumer.
call PUT /v1/issuers/demo <<EOF
{"issuer":"portico-demo","audiences":["portico"],"algorithms":["HS256"],
 "keys":["${PORTICO_JWT_SECRET}"],"leeway":"30s","consumer_claim":"sub"}
EOF

# jwt_issuers: tokens of the demo issuer may name alice (and carry her
# groups); no other issuer's may.
call PUT /v1/consumers/alice <<'EOF'
{"groups":["staff","beta"],"jwt_issuers":["demo"]}
EOF

# /public/* has no limit of its own: the global default below applies.
call PUT /v1/routes/public <<'EOF'
{"paths":["/public/*"],"methods":["GET","HEAD"],"service":"users","strip_prefix":true}
EOF
# /users/*: any authenticated consumer, limited per consumer.
call PUT /v1/routes/users <<'EOF'
{"paths":["/users/*"],"service":"users",
 "auth":{"api_key":true,"jwt":true,"issuers":["demo"],"forward_claims":{"sub":"X-User-Id"}},
 "rate_limit":{"limit":60,"window":"1m","burst":10,"key":"consumer"}}
EOF
# /orders/*: staff only, and at most 20 requests in flight per data plane.
call PUT /v1/routes/orders <<'EOF'
{"paths":["/orders/*"],"service":"orders",
 "auth":{"api_key":true,"jwt":true,"issuers":["demo"],"groups":["staff"]},
 "max_in_flight":20,"queue_timeout":"1s"}
EOF

# /catalog/*: answers cached for 30 s in Redis, shared by every data plane;
# POST /v1/routes/catalog/cache/purge empties it.
call PUT /v1/routes/catalog <<'EOF'
{"paths":["/catalog/*"],"methods":["GET","HEAD"],"service":"users","rewrite":"/catalog/{*}",
 "cache":{"ttl":"30s","store":"redis"},
 "cors":{"allow_origins":["http://localhost:3000"],"max_age":"10m"}}
EOF
# /profile/{id}: one request, two services, one merged JSON answer.
call PUT /v1/routes/profile <<'EOF'
{"paths":["/profile/{id}"],"methods":["GET"],
 "aggregate":[{"service":"users","path":"/users/{id}","key":"user","required":true},
              {"service":"orders","path":"/orders?user={id}","key":"orders","timeout":"500ms"}]}
EOF

# /quotes: JSON to SOAP. The control plane fetches the WSDL now (the data
# planes never do) and checks the operations against it.
call PUT /v1/services/quotes <<'EOF'
{"protocol":"soap","targets":[{"url":"http://quotes:9002"}],
 "soap":{"wsdl":"http://quotes:9002/quotes?wsdl"}}
EOF
call PUT /v1/routes/quote <<'EOF'
{"paths":["/quotes/{symbol}"],"methods":["GET"],"service":"quotes","soap":{"operation":"GetQuote"}}
EOF
call PUT /v1/routes/quotes <<'EOF'
{"paths":["/quotes"],"methods":["GET","POST"],"service":"quotes","soap":{"operation":"GetQuotes"}}
EOF

# The demo gRPC service: /shop/orders/{id} as JSON (JSON to gRPC), and
# grpc.testing.TestService passed through as gRPC (no method: gRPC clients
# call it on :8443, HAProxy passing TLS through to the data planes). Its
# health check is the gRPC health protocol.
call PUT /v1/services/shop <<'EOF'
{"protocol":"grpc","targets":[{"url":"http://shop:9090"}],
 "health_check":{"path":"/grpc.testing.TestService","interval":"5s"}}
EOF
call PUT /v1/routes/order <<'EOF'
{"paths":["/shop/orders/{id}"],"methods":["GET"],"service":"shop","grpc":{"method":"shop.v1.Orders/GetOrder"}}
EOF
call PUT /v1/routes/grpc-echo <<'EOF'
{"paths":["/grpc.testing.TestService/*"],"service":"shop"}
EOF

# Cluster-wide default for routes without a limit: per client address,
# counted in Redis across every data plane.
call PUT /v1/global <<'EOF'
{"rate_limit":{"limit":300,"window":"1m","burst":30,"key":"ip","on_redis_error":"fail_open"}}
EOF

# The demo certificate (made by tls-init) for the data planes' TLS
# listener. Its key goes in once more on every run (an unchanged
# certificate is a no-op); the admin API never shows it back.
if [ -f /tls/cert.pem ] && [ -f /tls/key.pem ]; then
  pem_json() { awk 'BEGIN { ORS = "" } { print $0 "\\n" }' "$1"; }
  printf '{"cert":"%s","key":"%s","snis":["localhost"]}' "$(pem_json /tls/cert.pem)" "$(pem_json /tls/key.pem)" |
    call PUT /v1/certificates/demo
fi

# An ACME certificate from the stack's Pebble (see docker-compose.yml):
# the control plane orders it and renews it; every data plane answers
# Pebble's challenges. Re-sent on every run: GET-able state is kept.
if [ -f /tls/ca.pem ]; then
  pem_json() { awk 'BEGIN { ORS = "" } { print $0 "\\n" }' "$1"; }
  printf '{"snis":["shop.portico.test"],"acme":{"directory":"https://pebble:14000/dir","email":"ops@portico.test","ca":"%s"}}' "$(pem_json /tls/ca.pem)" |
    call PUT /v1/certificates/acme-demo
fi

if [ -n "${PORTICO_DEMO_API_KEY:-}" ]; then
  # The key is not echoed here: secrets-init printed it on the first start.
  printf '{"key":"%s"}' "${PORTICO_DEMO_API_KEY}" | call POST /v1/consumers/alice/api-keys
  echo "seed: alice's API key is the demo-api-key secrets-init printed on the first start (docker compose logs secrets-init)"
  echo "seed: try  curl -H 'X-API-Key: <demo-api-key>' http://localhost:8080/orders/1"
  echo "seed: (read it again: docker compose run --rm --no-deps -T --entrypoint cat seed /secrets/demo-api-key)"
elif call GET /v1/consumers/alice/api-keys && grep -q '"id"' "$out"; then
  echo "seed: alice already has an API key (keys are shown once; revoke it and run the seed again for a new one)"
else
  call POST /v1/consumers/alice/api-keys </dev/null
  key="$(sed -n 's/.*"key" *: *"\([^"]*\)".*/\1/p' "$out")"
  echo "seed: alice's API key, shown this once: ${key}"
  echo "seed: try  curl -H 'X-API-Key: ${key}' http://localhost:8080/orders/1"
fi
echo "seed: JWTs for /users and /orders: HS256 with PORTICO_JWT_SECRET (compose: the jwt-secret file of the secrets volume), iss portico-demo, aud portico, sub alice, with exp"
echo "seed: done; try  curl http://localhost:8080/public/hello"
echo "seed:      and  curl 'http://localhost:8080/quotes/ACME?side=sell' (JSON to SOAP, learned from the WSDL)"
echo "seed:      and  curl --cacert portico-ca.pem https://localhost:8443/public/hello (HTTP/2; the CA: docker compose run --rm --entrypoint cat tls-init /tls/ca.pem > portico-ca.pem)"
echo "seed:      and  curl -s -H \"Authorization: Bearer <admin-token>\" http://127.0.0.1:9000/v1/certificates/acme-demo (acme.state: ordered from the stack's Pebble, validated through the load balancer)"
echo "seed:      and  curl -sk https://127.0.0.1:15000/roots/0 > pebble-root.pem; curl --cacert pebble-root.pem --resolve shop.portico.test:8443:127.0.0.1 https://shop.portico.test:8443/public/hello"
echo "seed:      and  curl -i http://localhost:8080/catalog/books (X-Cache-Status), curl http://localhost:8080/profile/7"
echo "seed:      and  curl http://localhost:8080/shop/orders/42 (JSON to gRPC); gRPC clients: grpc.testing.TestService on localhost:8443 (TLS, the demo CA), passed through as gRPC"
