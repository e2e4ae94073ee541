#!/usr/bin/env bash
# `make run`: a working Portico on this machine, no Docker. Starts a control
# plane (dev mode, embedded bbolt store), one data plane, a demo upstream,
# a demo gRPC service and a demo SOAP service, creates example services and
# routes (a plain one, a cached one, an aggregating one, a JSON-to-gRPC one,
# a gRPC pass-through one, two JSON-to-SOAP ones), takes HTTP/2 without TLS
# (--h2c, for gRPC clients), serves HTTPS on
# TLS_ADDR with a certificate for localhost it makes on first start (a local
# CA and a leaf, kept in $DATA/tls, remade when under 30 days from expiry;
# needs openssl), and prints what to try. Ctrl-C stops everything. Ports can
# be moved with the variables below.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${BIN:-$PWD/bin}"
DATA="${PORTICO_RUN_DIR:-$PWD/.portico/run}"
CP_ADDR="${CP_ADDR:-127.0.0.1:9000}"
DP_ADDR="${DP_ADDR:-127.0.0.1:8080}"
OPS_ADDR="${OPS_ADDR:-127.0.0.1:8081}"
UP_ADDR="${UP_ADDR:-127.0.0.1:9001}"
GRPC_ADDR="${GRPC_ADDR:-127.0.0.1:9090}"
SOAP_ADDR="${SOAP_ADDR:-127.0.0.1:9002}"
TLS_ADDR="${TLS_ADDR:-127.0.0.1:8443}"
OPA_ADDR="${OPA_ADDR:-127.0.0.1:8181}"
# ACME=1: also start Pebble (a local ACME server, built once by
# scripts/ensure-pebble.sh) validating against the data plane's ports, and
# its DNS helper answering 127.0.0.1 for every name, to try automatic
# certificates.
ACME="${ACME:-0}"
PEBBLE_ADDR="${PEBBLE_ADDR:-127.0.0.1:14000}"
PEBBLE_MGMT="${PEBBLE_MGMT:-127.0.0.1:15000}"
PEBBLE_DNS="${PEBBLE_DNS:-127.0.0.1:8053}"
PEBBLE_DNS_MGMT="${PEBBLE_DNS_MGMT:-127.0.0.1:8055}"
# OIDC=1: also start ORY Hydra in memory (built once by
# scripts/ensure-hydra.sh: about 6 minutes the first time) with a sign-in
# app for a demo user (bin/demo-oidc, which also registers the gateway at
# Hydra and configures route app on /app/* behind an OIDC login).
OIDC="${OIDC:-0}"
HYDRA_PUBLIC="${HYDRA_PUBLIC:-127.0.0.1:4444}"
HYDRA_ADMIN="${HYDRA_ADMIN:-127.0.0.1:4445}"
OIDC_APP="${OIDC_APP:-127.0.0.1:4446}"
mkdir -p "$DATA"

# make_cert: a local CA and a certificate for localhost signed by it, made
# once and kept in $DATA/tls (the CA's key never leaves that directory).
TLS_DIR="$DATA/tls"
make_cert() {
  command -v openssl >/dev/null || return 1
  if [ -f "$TLS_DIR/cert.pem" ] && openssl x509 -checkend 2592000 -noout -in "$TLS_DIR/cert.pem" >/dev/null 2>&1; then
    return 0
  fi
  mkdir -p "$TLS_DIR" && chmod 700 "$TLS_DIR"
  (
    cd "$TLS_DIR"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
      -days 3650 -subj "/CN=Portico make-run local CA" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out leaf.csr -subj "/CN=localhost"
    printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >leaf.ext
    openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 397 -extfile leaf.ext -out cert.pem
    rm -f leaf.csr leaf.ext
  ) >"$DATA/tls.log" 2>&1
}
TLS_ARGS=()
if make_cert; then
  TLS_ARGS=(--tls-listen "$TLS_ADDR" --tls-default-cert local --http3)
else
  echo "openssl not found: no HTTPS listener this time" >&2
fi

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

wait_http() { # url, what[, tries of 0.1s]
  for _ in $(seq 1 "${3:-100}"); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$2 did not come up at $1; logs are in $DATA" >&2
  exit 1
}

if [ "$ACME" = 1 ] && [ ${#TLS_ARGS[@]} -gt 0 ]; then
  PEBBLE_BIN="$(scripts/ensure-pebble.sh)"
  # Pebble's own HTTPS certificate (for 127.0.0.1) from the local CA, which
  # is then the certificate object's acme.ca.
  if [ ! -f "$TLS_DIR/pebble-cert.pem" ]; then
    (
      cd "$TLS_DIR"
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout pebble-key.pem -out pebble.csr -subj "/CN=127.0.0.1"
      printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >pebble.ext
      openssl x509 -req -in pebble.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 397 -extfile pebble.ext -out pebble-cert.pem
      rm -f pebble.csr pebble.ext
    ) >>"$DATA/tls.log" 2>&1
  fi
  printf '{"pebble":{"listenAddress":"%s","managementListenAddress":"%s","certificate":"%s","privateKey":"%s","httpPort":%s,"tlsPort":%s,"ocspResponderURL":"","keyAlgorithm":"ecdsa"}}\n' \
    "$PEBBLE_ADDR" "$PEBBLE_MGMT" "$TLS_DIR/pebble-cert.pem" "$TLS_DIR/pebble-key.pem" "${DP_ADDR##*:}" "${TLS_ADDR##*:}" >"$DATA/pebble.json"
  "$(dirname "$PEBBLE_BIN")/pebble-challtestsrv" -dnsserver "$PEBBLE_DNS" -management "$PEBBLE_DNS_MGMT" \
    -http01 "" -https01 "" -tlsalpn01 "" -doh "" -defaultIPv4 127.0.0.1 -defaultIPv6 "" >"$DATA/pebble-dns.log" 2>&1 &
  pids+=($!)
  PEBBLE_VA_NOSLEEP=1 "$PEBBLE_BIN" -config "$DATA/pebble.json" -dnsserver "$PEBBLE_DNS" >"$DATA/pebble.log" 2>&1 &
  pids+=($!)
fi
if [ "$OIDC" = 1 ]; then
  [ -x "${HYDRA_BIN:-}" ] || [ -x "${PORTICO_CACHE:-$HOME/.cache/portico}/hydra-${HYDRA_VERSION:-v2.3.0}" ] ||
    echo "OIDC=1: building ORY Hydra once (about 6 minutes; cached afterwards)..." >&2
  HYDRA_BIN="${HYDRA_BIN:-$(scripts/ensure-hydra.sh)}"
fi
"$BIN/demo-upstream" --listen "$UP_ADDR" --name demo >"$DATA/demo-upstream.log" 2>&1 &
pids+=($!)
"$BIN/demo-grpc" --listen "$GRPC_ADDR" >"$DATA/demo-grpc.log" 2>&1 &
pids+=($!)
"$BIN/demo-soap" --listen "$SOAP_ADDR" >"$DATA/demo-soap.log" 2>&1 &
pids+=($!)
"$BIN/controlplane" --dev --listen "$CP_ADDR" --store "bolt:$DATA/controlplane.db" >"$DATA/controlplane.log" 2>&1 &
pids+=($!)
wait_http "http://$CP_ADDR/healthz" "control plane"
"$BIN/dataplane" --controlplane "http://$CP_ADDR" --listen "$DP_ADDR" --ops-listen "$OPS_ADDR" --h2c \
  --state-dir "$DATA/dataplane" --node-id local-1 ${TLS_ARGS[@]+"${TLS_ARGS[@]}"} >"$DATA/dataplane.log" 2>&1 &
pids+=($!)
wait_http "http://$UP_ADDR/" "demo upstream"

curl -fsS -X PUT "http://$CP_ADDR/v1/services/demo" -H 'Content-Type: application/json' \
  -d "{\"targets\":[{\"url\":\"http://$UP_ADDR\",\"weight\":1}]}" >/dev/null
curl -fsS -X PUT "http://$CP_ADDR/v1/routes/demo" -H 'Content-Type: application/json' \
  -d '{"paths":["/demo/*"],"methods":["GET","POST"],"service":"demo","strip_prefix":true}' >/dev/null
curl -fsS -X PUT "http://$CP_ADDR/v1/routes/demo-v2" -H 'Content-Type: application/json' \
  -d '{"paths":["/demo/*"],"methods":["GET","POST"],"service":"demo","rewrite":"/v2/{*}","match":{"headers":{"X-Api-Version":"2"}}}' >/dev/null
curl -fsS -X PUT "http://$CP_ADDR/v1/services/demo-next" -H 'Content-Type: application/json' \
  -d "{\"targets\":[{\"url\":\"http://$UP_ADDR\",\"weight\":1}]}" >/dev/null
curl -fsS -X PUT "http://$CP_ADDR/v1/routes/canary" -H 'Content-Type: application/json' \
  -d '{"paths":["/canary/*"],"methods":["GET","POST"],"backends":[{"service":"demo","weight":90},{"service":"demo-next","weight":10}],"sticky":"header:X-User","strip_prefix":true,"mirror":{"service":"demo-next","percent":50},"fault":{"abort":{"percent":100,"status":503},"header":"X-Drill"}}' >/dev/null
curl -fsS -X PUT "http://$CP_ADDR/v1/routes/signup" -H 'Content-Type: application/json' \
  -d '{"paths":["/signup"],"methods":["POST"],"service":"demo","validate":{"body":{"type":"object","required":["name"],"properties":{"name":{"type":"string","minLength":1},"age":{"type":"integer","minimum":0}}}}}' >/dev/null
curl -fsS -X PUT "http://$CP_ADDR/v1/routes/cached" -H 'Content-Type: application/json' \
  -d '{"paths":["/cached/*"],"methods":["GET"],"service":"demo","rewrite":"/{*}","cache":{"ttl":"30s"}}' >/dev/null
curl -fsS -X PUT "http://$CP_ADDR/v1/routes/profile" -H 'Content-Type: application/json' \
  -d '{"paths":["/profile/{id}"],"methods":["GET"],"aggregate":[{"service":"demo","path":"/users/{id}","key":"user"},{"service":"demo","path":"/orders?user={id}","key":"orders"}]}' >/dev/null
curl -fsS -X PUT "http://$CP_ADDR/v1/services/shop" -H 'Content-Type: application/json' \
  -d "{\"protocol\":\"grpc\",\"targets\":[{\"url\":\"http://$GRPC_ADDR\"}]}" >/dev/null
curl -fsS -X PUT "http://$CP_ADDR/v1/routes/order" -H 'Content-Type: application/json' \
  -d '{"paths":["/shop/orders/{id}"],"methods":["GET"],"service":"shop","grpc":{"method":"shop.v1.Orders/GetOrder"}}' >/dev/null
# No method: gRPC clients' calls pass through as gRPC (h2c on the plain
# listener with --h2c, or HTTPS).
curl -fsS -X PUT "http://$CP_ADDR/v1/routes/grpc-echo" -H 'Content-Type: application/json' \
  -d '{"paths":["/grpc.testing.TestService/*"],"service":"shop"}' >/dev/null
# The control plane fetches the WSDL now; data planes get it in the snapshot.
wait_http "http://$SOAP_ADDR/healthz" "demo SOAP service"
curl -fsS -X PUT "http://$CP_ADDR/v1/services/quotes" -H 'Content-Type: application/json' \
  -d "{\"protocol\":\"soap\",\"targets\":[{\"url\":\"http://$SOAP_ADDR\"}],\"soap\":{\"wsdl\":\"http://$SOAP_ADDR/quotes?wsdl\"}}" >/dev/null
curl -fsS -X PUT "http://$CP_ADDR/v1/routes/quote" -H 'Content-Type: application/json' \
  -d '{"paths":["/quotes/{symbol}"],"methods":["GET"],"service":"quotes","soap":{"operation":"GetQuote"}}' >/dev/null
curl -fsS -X PUT "http://$CP_ADDR/v1/routes/quotes" -H 'Content-Type: application/json' \
  -d '{"paths":["/quotes"],"methods":["GET","POST"],"service":"quotes","soap":{"operation":"GetQuotes"}}' >/dev/null
# Basic auth: a consumer with a generated password, shown once (kept for
# the tour in a 0600 file), and a route that takes it.
curl -fsS -X PUT "http://$CP_ADDR/v1/consumers/carol" -H 'Content-Type: application/json' -d '{"groups":["staff"]}' >/dev/null
BASIC_URL="http://$CP_ADDR/v1/consumers/carol/basic-auth"
if [ ! -s "$DATA/carol.password" ] || ! curl -fsS "$BASIC_URL" | grep -q '"username":"carol"'; then
  for id in $(curl -fsS "$BASIC_URL" | grep -o '"id":"basic-[0-9a-f]*"' | cut -d'"' -f4); do curl -fsS -X DELETE "$BASIC_URL/$id"; done
  (umask 077; curl -fsS -X POST "$BASIC_URL" -H 'Content-Type: application/json' -d '{"username":"carol"}' |
    sed -n 's/.*"password":"\([^"]*\)".*/\1/p' >"$DATA/carol.password")
fi
curl -fsS -X PUT "http://$CP_ADDR/v1/routes/staff" -H 'Content-Type: application/json' \
  -d '{"paths":["/staff/*"],"service":"demo","strip_prefix":true,"auth":{"basic":true,"groups":["staff"]}}' >/dev/null
# IP rules: an office-only route (10.0.0.0/8); this machine's loopback is
# outside it until the tour adds it.
curl -fsS -X PUT "http://$CP_ADDR/v1/routes/office" -H 'Content-Type: application/json' \
  -d '{"paths":["/office/*"],"service":"demo","strip_prefix":true,"ip":{"allow":["10.0.0.0/8"]}}' >/dev/null
if [ ${#TLS_ARGS[@]} -gt 0 ]; then
  # The certificate goes through the admin API like any other; its key is
  # never shown again (GET and the export leave it out).
  # (through stdin: a key on a command line would show in ps)
  pem_json() { awk 'BEGIN { ORS = "" } { print $0 "\\n" }' "$1"; }
  printf '{"cert":"%s","key":"%s","snis":["localhost"]}' "$(pem_json "$TLS_DIR/cert.pem")" "$(pem_json "$TLS_DIR/key.pem")" |
    curl -fsS -X PUT "http://$CP_ADDR/v1/certificates/local" -H 'Content-Type: application/json' --data-binary @- >/dev/null
  # Client certificates (mTLS): a client CA and carol's certificate (CN
  # carol, clientAuth), made once; /mtls/* on localhost takes them.
  if [ ! -f "$TLS_DIR/carol.pem" ]; then
    (
      cd "$TLS_DIR"
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client-ca.key -out client-ca.pem \
        -days 3650 -subj "/CN=Portico make-run client CA" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout carol.key -out carol.csr -subj "/CN=carol"
      printf 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n' >carol.ext
      openssl x509 -req -in carol.csr -CA client-ca.pem -CAkey client-ca.key -CAcreateserial -days 397 -extfile carol.ext -out carol.pem
      rm -f carol.csr carol.ext
    ) >>"$DATA/tls.log" 2>&1
  fi
  curl -fsS -X PUT "http://$CP_ADDR/v1/consumers/carol" -H 'Content-Type: application/json' -d '{"groups":["staff"],"cert_identities":["cn:carol"]}' >/dev/null
  printf '{"paths":["/mtls/*"],"hosts":["localhost"],"service":"demo","strip_prefix":true,"auth":{"client_cert":{"ca":"%s"},"groups":["staff"]}}' "$(pem_json "$TLS_DIR/client-ca.pem")" |
    curl -fsS -X PUT "http://$CP_ADDR/v1/routes/mtls" -H 'Content-Type: application/json' --data-binary @- >/dev/null
fi
# External authorization with Open Policy Agent, when `make opa` built it:
# OPA's own server decides (its --authorization=basic policy reads the
# X-Forwarded-* and X-Consumer-Name headers of Portico's forward-auth check).
OPA="${OPA_BIN:-${PORTICO_CACHE:-$HOME/.cache/portico}/opa-v1.22.4}"
if [ -x "$OPA" ]; then
  cat >"$DATA/authz.rego" <<'REGO'
package system.authz

default allow := false

hdr(name) := object.get(input.headers, name, [""])[0]

# alice may read and write orders; bob may only read them.
allow if {
	startswith(hdr("X-Forwarded-Uri"), "/orders/")
	hdr("X-Consumer-Name") == "alice"
}

allow if {
	startswith(hdr("X-Forwarded-Uri"), "/orders/")
	hdr("X-Forwarded-Method") == "GET"
	hdr("X-Consumer-Name") == "bob"
}
REGO
  "$OPA" run --server --addr "$OPA_ADDR" --authorization=basic --skip-version-check --log-level error "$DATA/authz.rego" >"$DATA/opa.log" 2>&1 &
  pids+=($!)
  curl -fsS -X PUT "http://$CP_ADDR/v1/routes/orders" -H 'Content-Type: application/json' \
    -d "{\"paths\":[\"/orders/*\"],\"service\":\"demo\",\"auth\":{\"api_key\":true},\"ext_authz\":{\"http\":{\"url\":\"http://$OPA_ADDR/health\"},\"timeout\":\"500ms\"}}" >/dev/null
  umask 077
  for who in alice bob; do
    curl -fsS -X PUT "http://$CP_ADDR/v1/consumers/$who" -H 'Content-Type: application/json' -d '{}' >/dev/null
    [ -s "$DATA/$who.key" ] || curl -fsS -X POST "http://$CP_ADDR/v1/consumers/$who/api-keys" |
      sed -n 's/.*"key":"\([^"]*\)".*/\1/p' >"$DATA/$who.key"
  done
  umask 022
fi
if [ "$OIDC" = 1 ]; then
  # Every URL a browser may use for the data plane is a redirect URI.
  GATEWAYS="http://localhost:${DP_ADDR##*:},http://$DP_ADDR"
  [ ${#TLS_ARGS[@]} -eq 0 ] || GATEWAYS="$GATEWAYS,https://localhost:${TLS_ADDR##*:}"
  "$BIN/demo-oidc" --hydra "$HYDRA_BIN" --controlplane "http://$CP_ADDR" --gateway "$GATEWAYS" \
    --public "$HYDRA_PUBLIC" --admin "$HYDRA_ADMIN" --listen "$OIDC_APP" --dir "$DATA/oidc" >"$DATA/demo-oidc.log" 2>&1 &
  pids+=($!)
  oidc_pid=$!
  for _ in $(seq 1 1200); do # Hydra's first start makes RSA keys: seconds
    curl -fsS -o /dev/null "http://$OIDC_APP/healthz" 2>/dev/null && break
    kill -0 "$oidc_pid" 2>/dev/null || { echo "demo-oidc failed: $(tail -1 "$DATA/demo-oidc.log")" >&2; exit 1; }
    sleep 0.1
  done
  wait_http "http://$OIDC_APP/healthz" "ORY Hydra and the demo sign-in app (see $DATA/demo-oidc.log)"
fi
wait_http "http://$OPS_ADDR/readyz" "data plane"
for _ in $(seq 1 50); do curl -fsS -o /dev/null "http://$DP_ADDR/demo/" 2>/dev/null && break; sleep 0.1; done

cat <<MSG

Portico is running (dev mode: the admin API needs no token here).

  control plane  http://$CP_ADDR   (admin API, OpenAPI at /v1/openapi.json)
  admin web UI   http://$CP_ADDR/ui/   (open it in a browser: objects, data planes, traffic, audit)
  data plane     http://$DP_ADDR   (traffic)   ops: http://$OPS_ADDR/status
  demo upstream  http://$UP_ADDR     demo gRPC  $GRPC_ADDR (shop.v1.Orders, reflection; grpc.testing.TestService)
  demo SOAP      http://$SOAP_ADDR/quotes (WSDL at ?wsdl)
  logs and data  $DATA
MSG
if [ ${#TLS_ARGS[@]} -gt 0 ]; then
  cat <<MSG
  HTTPS          https://localhost:${TLS_ADDR##*:}   (HTTP/2; certificate by the local CA $TLS_DIR/ca.pem)
MSG
fi
cat <<MSG

Try (porticoctl reads PORTICO_URL; dev mode needs no token):
  export PORTICO_URL=http://$CP_ADDR PATH=$BIN:\$PATH
  curl -s http://$DP_ADDR/demo/hello?x=1                 # proxied to the demo upstream
  curl -s --cacert $TLS_DIR/ca.pem -w '%{http_version}\n' https://localhost:${TLS_ADDR##*:}/demo/hello   # HTTPS, HTTP/2
  curl -s --http3-only --cacert $TLS_DIR/ca.pem -w '%{http_version}\n' https://localhost:${TLS_ADDR##*:}/demo/hello   # HTTP/3 over UDP (a curl built with HTTP/3)
  curl -s --cacert $TLS_DIR/ca.pem https://localhost:${TLS_ADDR##*:}/mtls/hello | jq .status   # 401: a client certificate is required
  curl -s --cacert $TLS_DIR/ca.pem --cert $TLS_DIR/carol.pem --key $TLS_DIR/carol.key https://localhost:${TLS_ADDR##*:}/mtls/hello   # mTLS: carol by her certificate's CN
  porticoctl get certificates                            # SNIs, expiry (never the key)
  curl -si http://$DP_ADDR/cached/hello | grep -i cache   # MISS, then HIT (30 s)
  porticoctl purge cached                                # purge it on every data plane
  curl -s http://$DP_ADDR/profile/7 | jq                 # two calls merged into one answer
  curl -s 'http://$DP_ADDR/shop/orders/42?version=2' | jq   # JSON to gRPC
  curl -s http://$DP_ADDR/shop/orders/missing | jq        # gRPC NOT_FOUND as a 404 problem
  printf '\0\0\0\0\0' | curl -s --http2-prior-knowledge -H 'Content-Type: application/grpc' -H 'TE: trailers' \
       --data-binary @- -o /dev/null -D - http://$DP_ADDR/grpc.testing.TestService/EmptyCall   # gRPC passed through (h2c): grpc-status 0
  printf '\0\0\0\0\0' | curl -s --http2-prior-knowledge -H 'Content-Type: application/grpc' \
       --data-binary @- -D - http://$DP_ADDR/grpc.Nope/Call   # a refusal as a gRPC status: grpc-status 12, HTTP 200
  curl -s 'http://$DP_ADDR/quotes/ACME?side=sell' | jq   # JSON to SOAP (learned from the WSDL)
  curl -s 'http://$DP_ADDR/quotes?symbol=A&symbol=B' | jq   # maxOccurs>1: always an array
  curl -s 'http://$DP_ADDR/quotes/ACME?side=hold' | jq   # 400 naming the parameter, nothing sent
  curl -s http://$DP_ADDR/quotes/NOPE | jq               # a SOAP Client fault as a 422 problem
  curl -s -H 'X-Api-Version: 2' http://$DP_ADDR/demo/hello   # a header condition picks demo-v2 (the upstream sees /v2/hello)
  curl -s http://$CP_ADDR/v1/routes/demo-v2 | jq .precedence   # how it ranks: path kind, conditions, priority
  curl -s -X POST http://$DP_ADDR/signup -d '{"name":"","age":-1}' | jq   # 400: each failure with its JSON pointer
  for i in \$(seq 200); do curl -s -o /dev/null http://$DP_ADDR/canary/x; done; grep -o '"route":"canary","service":"[a-z-]*"' $DATA/dataplane.log | sort | uniq -c   # ~90/10 split
  curl -s http://$OPS_ADDR/metrics | grep '^portico_mirror_requests_total'   # half the canary's requests copied to demo-next, fire and forget
  curl -si -H 'X-Drill: 1' http://$DP_ADDR/canary/x | grep -iE '^HTTP|x-portico-fault'   # fault injection, only for requests with X-Drill
  curl -si http://$DP_ADDR/staff/hello | grep -iE '^HTTP|www-auth'   # 401, challenge Basic realm="portico"
  curl -s -u "carol:\$(cat $DATA/carol.password)" http://$DP_ADDR/staff/hello   # basic auth (consumer carol, group staff); the password is not forwarded
  curl -s http://$CP_ADDR/v1/consumers/carol/basic-auth | jq   # ids and usernames, never the password or its hash
  curl -s http://$DP_ADDR/office/hello | jq .type        # 403 ip-forbidden: 127.0.0.1 is not in the route's allow list
  curl -s -X PUT http://$CP_ADDR/v1/routes/office -H 'Content-Type: application/json' \\
       -d '{"paths":["/office/*"],"service":"demo","strip_prefix":true,"ip":{"allow":["10.0.0.0/8","127.0.0.1"]}}' >/dev/null
  curl -s http://$DP_ADDR/office/hello                   # now admitted (--trusted-proxies decides whose X-Forwarded-For counts)
  curl -s -X PUT http://$CP_ADDR/v1/global -H 'Content-Type: application/json' -d '{"ip":{"deny":["10.0.0.0/33"]}}' | jq .errors   # 422 at global.ip.deny[0], nothing applied
MSG
if [ -x "$OPA" ]; then
  cat <<MSG
  curl -s -H "X-API-Key: \$(cat $DATA/alice.key)" -X POST http://$DP_ADDR/orders/1   # OPA allows alice (ext_authz, forward-auth)
  curl -si -H "X-API-Key: \$(cat $DATA/bob.key)" -X POST http://$DP_ADDR/orders/1   # 401 from OPA's policy: bob may only GET
  curl -s http://$OPS_ADDR/metrics | grep '^portico_ext_authz_decisions_total'   # allowed / denied per route
MSG
else
  echo "  (make opa, then make run again: external authorization with Open Policy Agent on /orders)"
fi
cat <<MSG
  porticoctl get routes                                  # routes, with versions
  curl -s -X PUT http://$CP_ADDR/v1/routes/users -H 'Content-Type: application/json' \\
       -d '{"paths":["/users/{id}"],"methods":["GET"],"service":"demo"}'
  curl -s http://$DP_ADDR/users/42                       # live a few ms later
  porticoctl dataplanes                                  # nodes and convergence
  porticoctl analytics                                   # req/s, errors, p50/p99 per route
  porticoctl audit                                       # who changed what (which token)
  porticoctl dump > portico.yaml                         # the whole config as YAML, for git
  porticoctl diff -f portico.yaml                        # after an edit: exactly that change, exit 2
  porticoctl apply -f portico.yaml                       # one revision; refused if someone wrote since
  # OAuth2 introspection against a local ORY Hydra: see docs/CONFIGURATION.md ("Try it with make run")
MSG
if [ "$OIDC" = 1 ]; then
  cat <<MSG

OIDC login through ORY Hydra (issuer http://$HYDRA_PUBLIC, sign-in app http://$OIDC_APP; logs in $DATA/oidc):
  open http://localhost:${DP_ADDR##*:}/app/hello in a browser   # Hydra's sign-in form: user alice, password $(cat "$DATA/oidc/oidc-alice.password")
      # then the demo upstream's answer, with "identity": X-User-Id alice, X-User-Email alice@example.com, X-Auth-Method oidc
  open http://localhost:${DP_ADDR##*:}/app/logout                # ends the session here and at Hydra, lands on /demo/logged-out
  curl -si http://$DP_ADDR/app/hello | head -1                 # 401: API calls get no login redirect
  curl -si -H 'Accept: text/html' http://$DP_ADDR/app/hello | grep -i '^location'   # 302 to Hydra: PKCE (S256), state, nonce
  curl -s http://$CP_ADDR/v1/issuers/hydra-demo | jq .oidc     # client_id only: the client secret and session key are never shown
OAuth2 token introspection (RFC 7662): a service's opaque token, checked at Hydra's introspection endpoint:
  TOKEN=\$(curl -s -u demo-service:\$(cat $DATA/oidc/demo-service.secret) -d grant_type=client_credentials -d scope=orders:read http://$HYDRA_PUBLIC/oauth2/token | jq -r .access_token)
  curl -s -H "Authorization: Bearer \$TOKEN" http://$DP_ADDR/machine/hello | jq .identity   # consumer demo-service, X-Auth-Method introspection
  curl -s -H "Authorization: Bearer ory_at_madeup" http://$DP_ADDR/machine/hello | jq .status   # 401
MSG
else
  echo "  (OIDC=1 make run: OIDC login in a browser through a local ORY Hydra; the first time builds Hydra, about 6 minutes)"
fi
if [ "$ACME" = 1 ] && [ ${#TLS_ARGS[@]} -gt 0 ]; then
  cat <<MSG

Automatic certificates (ACME) against Pebble on https://$PEBBLE_ADDR/dir (it validates on this data plane's ports;
every name resolves to 127.0.0.1 through its DNS helper):
  jq -n --rawfile ca $TLS_DIR/ca.pem '{snis:["shop.example.test"],acme:{directory:"https://$PEBBLE_ADDR/dir",email:"ops@example.com",ca:\$ca}}' |
    curl -s -X PUT http://$CP_ADDR/v1/certificates/shop -H 'Content-Type: application/json' --data-binary @- | jq .acme
  curl -s http://$CP_ADDR/v1/certificates/shop | jq '.acme.state, .status.issuer'   # valid, not_after, renew_at, next_attempt (a second later)
  curl -s --cacert $TLS_DIR/ca.pem https://$PEBBLE_MGMT/roots/0 > $DATA/pebble-root.pem   # Pebble's root (new at each start)
  curl -s --cacert $DATA/pebble-root.pem --resolve shop.example.test:${TLS_ADDR##*:}:127.0.0.1 https://shop.example.test:${TLS_ADDR##*:}/demo/hello   # served with it
  curl -s -X POST http://$PEBBLE_DNS_MGMT/add-a -d '{"host":"nowhere.example.test","addresses":["127.0.0.2"]}'   # a name resolving where nothing listens
  jq -n --rawfile ca $TLS_DIR/ca.pem '{snis:["nowhere.example.test"],acme:{directory:"https://$PEBBLE_ADDR/dir",ca:\$ca}}' |
    curl -s -X PUT http://$CP_ADDR/v1/certificates/nowhere -H 'Content-Type: application/json' --data-binary @- >/dev/null
  curl -s http://$CP_ADDR/v1/certificates/nowhere | jq .acme.state   # failed, last_error, failures, next_attempt (1 min, doubling)
MSG
fi
cat <<MSG

Ctrl-C stops everything.
MSG
wait -n "${pids[@]}" || true
echo "a process exited; see the logs in $DATA" >&2
