#!/usr/bin/env bash
# `make bench-load`: a side-by-side HTTP load benchmark on loopback. Starts a
# tiny Go upstream and, in front of it, nginx, HAProxy, a bare Go
# httputil.ReverseProxy, Portico (control plane in dev mode + one data plane),
# Traefik and Caddy (built once from the Go module proxy by
# scripts/ensure-traefik.sh and scripts/ensure-caddy.sh, cached under
# ~/.cache/portico). Then it runs wrk (h2load for HTTP/2) against each target
# in interleaved rounds and prints one table per scenario: req/s (median of
# rounds), p50/p99 latency, proxy CPU µs per request (from /proc/<pid>/stat),
# peak RSS (VmHWM) and ratios. Everything is stopped at exit. Not part of
# `make test`. See docs/PERFORMANCE.md.
#
# The TLS scenarios (https, h2, handshake) use one certificate for every proxy:
# a CA and an ECDSA P-256 leaf for localhost and 127.0.0.1 made here with
# openssl. https: wrk over TLS with keep-alive (HTTP/1.1); h2: h2load,
# H2_CONNS connections x H2_STREAMS concurrent streams; handshake: wrk with
# `Connection: close`, so every request pays a new TCP connection and TLS
# handshake (wrk's OpenSSL resumes the session: TLS 1.3 PSK with ECDHE, no
# certificate signature, as a returning client would; the latency wrk reports
# starts after the handshake). Their tables give Portico's req/s
# divided by each target's, and Portico against Traefik (target >= 1.25).
#
# The curves of issue 20 vary one thing at a time on the plain route: conns
# (CURVE_CONNS, "1 64 512 4096"), bodies (CURVE_BODIES bytes each way, "1024
# 65536 1048576"), routes (CURVE_ROUTES loaded, "10 1000 100000", Portico
# only, with live heap per route), keys (1 and 1,000 distinct Redis rate-limit
# keys), rate (a fixed rate of RATE_SHARE=50% of Portico's saturation, sent
# open-loop by vegeta, scripts/ensure-vegeta.sh) and idle (resident memory per
# idle keep-alive connection, IDLE_CONNS=2000); "curves" runs them all, on
# CURVE_TARGETS ("nginx portico traefik") where the others can do the work.
#
# Knobs: ROUNDS (2), DURATION (5s, at most 10s), CONNS (64), THREADS (2),
# H2_CONNS (16), H2_STREAMS (8), SCENARIOS (any of "plain full https h2
# handshake routes10k propagation groups conns bodies routes keys rate idle
# curves";
# default "plain full https h2 handshake"), PEERS (0: leave Traefik and Caddy
# out instead of building them), BENCH_DIR (kept when set), FASTPROTO (1: add
# fasthttp-proto and nbio-proto, the fast-HTTP/1.1 prototypes of
# dataplane/cmd/bench-fastproxy, to the plain scenario), PROFILE (1: after the
# scenarios, one more wrk run per plain target counting its read and write
# system calls per request from /proc/<pid>/io, with a CPU profile of Portico
# and the prototypes saved in the bench dir).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-5s}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
SCENARIOS="${SCENARIOS:-plain full https h2 handshake}"
H2_CONNS="${H2_CONNS:-16}"
H2_STREAMS="${H2_STREAMS:-8}"
PEERS="${PEERS:-1}"
FASTPROTO="${FASTPROTO:-0}"
PROFILE="${PROFILE:-0}"
ROUTES="${ROUTES:-10000}"
BIN="${BIN:-$ROOT/bin}"
CACHE="${PORTICO_CACHE:-${HOME}/.cache/portico}"
case "${DURATION}" in
  [1-9]s | 10s) ;;
  *) echo "DURATION must be 1s..10s (load runs are bounded)" >&2; exit 2 ;;
esac

# --- tools ---------------------------------------------------------------
PATH="$PATH:/usr/sbin:/sbin"
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "installing ${need[*]} (Debian packages) for the load benchmark" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  # The packages start system-wide servers; nothing here uses them.
  $SUDO systemctl disable --now nginx haproxy >/dev/null 2>&1 || true
  $SUDO service nginx stop >/dev/null 2>&1 || true
  $SUDO service haproxy stop >/dev/null 2>&1 || true
fi
for t in wrk nginx haproxy curl h2load openssl; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done
for b in controlplane dataplane; do
  [[ -x "$BIN/$b" ]] || { echo "missing $BIN/$b: run make build" >&2; exit 1; }
done

if [[ -n "${BENCH_DIR:-}" ]]; then
  DIR="$BENCH_DIR"
  mkdir -p "$DIR"
else
  DIR="$(mktemp -d /tmp/portico-bench.XXXXXX)"
fi
go build -trimpath -o "$DIR/bench-upstream" ./dataplane/cmd/bench-upstream
go build -trimpath -o "$DIR/bench-stdlibproxy" ./dataplane/cmd/bench-stdlibproxy
if [[ "$FASTPROTO" == 1 ]]; then
  # A module of its own (the data plane's dependencies stay as they are).
  (cd dataplane/cmd/bench-fastproxy && GOWORK=off go build -trimpath -o "$DIR/bench-fastproxy" .)
fi

# --- process management -----------------------------------------------------
pids=()
cleanup() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n "${BENCH_DIR:-}" ]] || rm -rf "$DIR"
}
trap cleanup INT TERM EXIT

used_ports=" "
# Ports are picked below the kernel's ephemeral range, so that no outgoing
# connection (wrk, the proxies' upstream pools) can already hold them.
read -r EPH_LO _ </proc/sys/net/ipv4/ip_local_port_range
PORT_LO=10000
((EPH_LO - PORT_LO >= 2000)) || PORT_LO=$((EPH_LO - 2000))
free_port() { # prints a loopback port nobody listens on (and we did not hand out)
  local p
  while :; do
    p=$((PORT_LO + RANDOM % (EPH_LO - PORT_LO)))
    [[ "$used_ports" == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      used_ports+="$p "
      echo "$p"
      return
    fi
  done
}

wait_http() { # url, what
  for _ in $(seq 1 150); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$2 did not come up at $1; logs are in $DIR (set BENCH_DIR to keep them)" >&2
  exit 1
}

render() { # template, out, listen, upstream
  sed -e "s|@LISTEN@|$3|g" -e "s|@UPSTREAM@|$4|g" -e "s|@DIR@|$DIR|g" "$1" >"$2"
}

# proc_pids <pid>: the pid and its direct children (nginx master + workers).
proc_pids() {
  echo "$1"
  pgrep -P "$1" 2>/dev/null || true
}
cpu_ticks() { # utime+stime of a process tree (fields 14 and 15 of /proc/<pid>/stat)
  local sum=0 p f
  for p in $(proc_pids "$1"); do
    f="$(cat "/proc/$p/stat" 2>/dev/null)" || continue
    f="${f##*) }" # the command name may hold spaces; fields restart after ")"
    read -r -a a <<<"$f"
    sum=$((sum + a[11] + a[12]))
  done
  echo "$sum"
}
peak_rss_kib() {
  local sum=0 p v
  for p in $(proc_pids "$1"); do
    v="$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null)" || continue
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
TICK="$(getconf CLK_TCK)"
# median(list): the median of a space-separated list; every report's awk
# program starts with it.
MEDIAN_AWK='
function median(list, n,   a, i, j, t) {
  n = split(list, a, " ")
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}'

# --- TLS: one certificate for every proxy --------------------------------------
want_tls=""
for sc in $SCENARIOS; do
  case "$sc" in https | h2 | handshake) want_tls=1 ;; esac
done
TLS="$DIR/tls"
make_certs() { # a CA and a leaf for localhost and 127.0.0.1, ECDSA P-256, a week long
  mkdir -p "$TLS"
  (
    cd "$TLS"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
      -subj "/CN=Portico bench CA" -keyout ca.key -out ca.pem \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
      -keyout leaf.key -out leaf.csr
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >leaf.ext
    openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 7 \
      -extfile leaf.ext -out leaf.pem
    cat leaf.pem leaf.key >leaf-full.pem # HAProxy wants both in one file
  ) >"$DIR/openssl.log" 2>&1 || { echo "openssl failed; see $DIR/openssl.log" >&2; exit 1; }
}
[[ -z "$want_tls" ]] || make_certs

# wait_https <url> <what>: answers 200 over TLS with the bench CA, and offers h2.
wait_https() {
  local v
  for _ in $(seq 1 150); do
    v="$(curl -fsS -o /dev/null -w '%{http_version}' --http2 --cacert "$TLS/ca.pem" "$1" 2>/dev/null)" && break
    sleep 0.1
  done
  [[ "${v:-}" == 2 ]] || { echo "$2 did not answer over HTTPS with HTTP/2 at $1 (got '${v:-nothing}'); logs are in $DIR (set BENCH_DIR to keep them)" >&2; exit 1; }
}

# TLS targets, measured by the https, h2 and handshake scenarios.
tls_names=() tls_urls=() tls_pids=()
add_tls_target() { tls_names+=("$1"); tls_urls+=("$2"); tls_pids+=("$3"); }

# --- targets -----------------------------------------------------------------
names=() urls=() tpids=() hdrs=()
add_target() { names+=("$1"); urls+=("$2"); tpids+=("$3"); hdrs+=("${4:-}"); }

UP_PORT="$(free_port)"
UP="127.0.0.1:$UP_PORT"
"$DIR/bench-upstream" --listen "$UP" >"$DIR/upstream.log" 2>&1 &
UP_PID=$!
pids+=("$UP_PID")
wait_http "http://$UP/" "bench upstream"
add_target direct "http://$UP/bench/x" "$UP_PID"

NG_PORT="$(free_port)"
render deployments/bench/nginx.conf "$DIR/nginx.conf" "127.0.0.1:$NG_PORT" "$UP"
nginx -c "$DIR/nginx.conf" -p "$DIR" >"$DIR/nginx.log" 2>&1 &
pids+=($!)
add_target nginx "http://127.0.0.1:$NG_PORT/bench/x" "$!"
wait_http "http://127.0.0.1:$NG_PORT/" "nginx"

HA_PORT="$(free_port)"
render deployments/bench/haproxy.cfg "$DIR/haproxy.cfg" "127.0.0.1:$HA_PORT" "$UP"
haproxy -db -f "$DIR/haproxy.cfg" >"$DIR/haproxy.log" 2>&1 &
pids+=($!)
add_target haproxy "http://127.0.0.1:$HA_PORT/bench/x" "$!"
wait_http "http://127.0.0.1:$HA_PORT/" "haproxy"

SP_PORT="$(free_port)"
"$DIR/bench-stdlibproxy" --listen "127.0.0.1:$SP_PORT" --upstream "http://$UP" >"$DIR/stdlibproxy.log" 2>&1 &
pids+=($!)
add_target go-stdlib "http://127.0.0.1:$SP_PORT/bench/x" "$!"
wait_http "http://127.0.0.1:$SP_PORT/" "stdlib proxy"

FP_PPROF="" NB_PPROF=""
if [[ "$FASTPROTO" == 1 ]]; then
  FP_PORT="$(free_port)"
  fp_args=()
  if [[ "$PROFILE" == 1 ]]; then
    FP_PPROF="127.0.0.1:$(free_port)"
    fp_args=(--pprof "$FP_PPROF")
  fi
  "$DIR/bench-fastproxy" --listen "127.0.0.1:$FP_PORT" --upstream "http://$UP" "${fp_args[@]}" >"$DIR/fastproxy.log" 2>&1 &
  pids+=($!)
  add_target fasthttp-proto "http://127.0.0.1:$FP_PORT/bench/x" "$!"
  wait_http "http://127.0.0.1:$FP_PORT/bench/x" "fasthttp prototype"
  # The same binary with nbio's event loop in front of go-stdlib's handler.
  NB_PORT="$(free_port)"
  nb_args=()
  if [[ "$PROFILE" == 1 ]]; then
    NB_PPROF="127.0.0.1:$(free_port)"
    nb_args=(--pprof "$NB_PPROF")
  fi
  "$DIR/bench-fastproxy" --engine nbio --listen "127.0.0.1:$NB_PORT" --upstream "http://$UP" "${nb_args[@]}" >"$DIR/nbioproxy.log" 2>&1 &
  pids+=($!)
  add_target nbio-proto "http://127.0.0.1:$NB_PORT/bench/x" "$!"
  wait_http "http://127.0.0.1:$NB_PORT/bench/x" "nbio prototype"
fi

CP="127.0.0.1:$(free_port)"
DP="127.0.0.1:$(free_port)"
OPS="127.0.0.1:$(free_port)"
"$BIN/controlplane" --dev --listen "$CP" --store "bolt:$DIR/controlplane.db" --log-level warn >"$DIR/controlplane.log" 2>&1 &
pids+=($!)
wait_http "http://$CP/healthz" "control plane"
tls_args=()
if [[ -n "$want_tls" ]]; then
  DPS="127.0.0.1:$(free_port)"
  tls_args=(--tls-listen "$DPS" --tls-default-cert bench)
  python3 - "$TLS/leaf.pem" "$TLS/leaf.key" >"$DIR/certificate.json" <<'PY2'
import json, sys
print(json.dumps({"cert": open(sys.argv[1]).read(), "key": open(sys.argv[2]).read(), "snis": ["localhost"]}))
PY2
  curl -fsS -X PUT "http://$CP/v1/certificates/bench" -H 'Content-Type: application/json' \
    --data-binary "@$DIR/certificate.json" >/dev/null
fi
"$BIN/dataplane" --controlplane "http://$CP" --listen "$DP" --ops-listen "$OPS" --state-dir "$DIR/dataplane" \
  --node-id bench-1 --access-log off --log-level warn --ops-pprof "${tls_args[@]}" >"$DIR/dataplane.log" 2>&1 &
DP_PID=$!
pids+=("$DP_PID")
curl -fsS -X PUT "http://$CP/v1/services/bench" -H 'Content-Type: application/json' \
  -d "{\"targets\":[{\"url\":\"http://$UP\",\"weight\":1}]}" >/dev/null
curl -fsS -X PUT "http://$CP/v1/routes/bench" -H 'Content-Type: application/json' \
  -d '{"paths":["/bench/*"],"service":"bench"}' >/dev/null
wait_http "http://$OPS/readyz" "data plane"
wait_http "http://$DP/bench/x" "portico route"
add_target portico "http://$DP/bench/x" "$DP_PID"

# Traefik and Caddy: built once from the Go module proxy and cached (the
# scripts say how); PEERS=0 leaves them out. A build that fails is reported
# and the run goes on without that peer.
skipped=()
PEER_BIN=""
peer_bin() { # name: sets PEER_BIN to the cached binary, or to "" (and notes why)
  PEER_BIN=""
  if [[ "$PEERS" == 0 ]]; then
    skipped+=("$1 (PEERS=0)")
    return
  fi
  if PEER_BIN="$(bash "scripts/ensure-$1.sh" 2>"$DIR/$1-build.log")" && [[ -x "$PEER_BIN" ]]; then
    return
  fi
  PEER_BIN=""
  { echo "$1: scripts/ensure-$1.sh failed; its last lines:"; tail -5 "$DIR/$1-build.log"; } >&2
  skipped+=("$1 (scripts/ensure-$1.sh failed)")
}
# The benchmark never reaches outside the machine: no version check, no usage report.
TRAEFIK_GLOBAL=$'global:\n  checkNewVersion: false\n  sendAnonymousUsage: false'
peer_bin traefik
TRAEFIK="$PEER_BIN"
if [[ -n "$TRAEFIK" ]]; then
  TR_PORT="$(free_port)"
  render deployments/bench/traefik-dynamic.yml "$DIR/traefik-dynamic.yml" "127.0.0.1:$TR_PORT" "$UP"
  { sed -e "s|@LISTEN@|127.0.0.1:$TR_PORT|g" -e "s|@DIR@|$DIR|g" deployments/bench/traefik.yml; echo "$TRAEFIK_GLOBAL"; } >"$DIR/traefik.yml"
  "$TRAEFIK" --configfile="$DIR/traefik.yml" >"$DIR/traefik.log" 2>&1 &
  pids+=($!)
  add_target traefik "http://127.0.0.1:$TR_PORT/bench/x" "$!"
  wait_http "http://127.0.0.1:$TR_PORT/bench/x" "traefik"
fi
peer_bin caddy
CADDY="$PEER_BIN"
if [[ -n "$CADDY" ]]; then
  CA_PORT="$(free_port)"
  render deployments/bench/Caddyfile "$DIR/Caddyfile" "127.0.0.1:$CA_PORT" "$UP"
  "$CADDY" run --config "$DIR/Caddyfile" --adapter caddyfile >"$DIR/caddy.log" 2>&1 &
  pids+=($!)
  add_target caddy "http://127.0.0.1:$CA_PORT/bench/x" "$!"
  wait_http "http://127.0.0.1:$CA_PORT/bench/x" "caddy"
fi

# TLS instances: the same proxies, settings and upstream as above, with the
# bench certificate, TLS 1.2 and 1.3, ALPN h2 and http/1.1, session
# resumption on (each one's default or the usual setting). Separate processes
# so that their CPU and memory are measured alone; Portico's is the same data
# plane, with --tls-listen.
start_tls_targets() {
  local port
  port="$(free_port)"
  cat >"$DIR/nginx-tls.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
pid $DIR/nginx-tls.pid;
error_log $DIR/nginx-tls-error.log warn;
events {
    worker_connections 4096;
    multi_accept on;
}
http {
    access_log off;
    client_body_temp_path $DIR/nginx-body;
    proxy_temp_path $DIR/nginx-proxy;
    fastcgi_temp_path $DIR/nginx-fastcgi;
    uwsgi_temp_path $DIR/nginx-uwsgi;
    scgi_temp_path $DIR/nginx-scgi;
    keepalive_requests 1000000;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:bench:10m;
    upstream bench_upstream {
        server $UP;
        keepalive 128;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port ssl http2;
        ssl_certificate $TLS/leaf.pem;
        ssl_certificate_key $TLS/leaf.key;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
}
EOF
  nginx -c "$DIR/nginx-tls.conf" -p "$DIR" >"$DIR/nginx-tls.log" 2>&1 &
  pids+=($!)
  add_tls_target nginx "https://localhost:$port/bench/x" "$!"
  wait_https "https://localhost:$port/bench/x" "nginx (TLS)"

  port="$(free_port)"
  cat >"$DIR/haproxy-tls.cfg" <<EOF
global
    nbthread 2
    maxconn 4096
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    option forwardfor
    http-reuse always
frontend bench
    bind 127.0.0.1:$port ssl crt $TLS/leaf-full.pem alpn h2,http/1.1
    default_backend upstream
backend upstream
    server up1 $UP maxconn 256
EOF
  haproxy -db -f "$DIR/haproxy-tls.cfg" >"$DIR/haproxy-tls.log" 2>&1 &
  pids+=($!)
  add_tls_target haproxy "https://localhost:$port/bench/x" "$!"
  wait_https "https://localhost:$port/bench/x" "haproxy (TLS)"

  wait_https "https://localhost:${DPS##*:}/bench/x" "portico (TLS)"
  add_tls_target portico "https://localhost:${DPS##*:}/bench/x" "$DP_PID"

  if [[ -n "$TRAEFIK" ]]; then
    port="$(free_port)"
    cat >"$DIR/traefik-tls.yml" <<EOF
entryPoints:
  websecure:
    address: "127.0.0.1:$port"
providers:
  file:
    filename: "$DIR/traefik-tls-dynamic.yml"
log:
  level: ERROR
$TRAEFIK_GLOBAL
EOF
    cat >"$DIR/traefik-tls-dynamic.yml" <<EOF
http:
  routers:
    bench:
      rule: "PathPrefix(\`/\`)"
      entryPoints: [websecure]
      service: bench
      tls: {}
  services:
    bench:
      loadBalancer:
        servers:
          - url: "http://$UP"
tls:
  certificates:
    - certFile: "$TLS/leaf.pem"
      keyFile: "$TLS/leaf.key"
  stores:
    default:
      defaultCertificate:
        certFile: "$TLS/leaf.pem"
        keyFile: "$TLS/leaf.key"
EOF
    "$TRAEFIK" --configfile="$DIR/traefik-tls.yml" >"$DIR/traefik-tls.log" 2>&1 &
    pids+=($!)
    add_tls_target traefik "https://localhost:$port/bench/x" "$!"
    wait_https "https://localhost:$port/bench/x" "traefik (TLS)"
  fi

  if [[ -n "$CADDY" ]]; then
    port="$(free_port)"
    cat >"$DIR/Caddyfile-tls" <<EOF
{
	admin off
	auto_https off
	servers {
		protocols h1 h2
	}
}

https://localhost:$port, https://127.0.0.1:$port {
	bind 127.0.0.1
	tls $TLS/leaf.pem $TLS/leaf.key
	reverse_proxy $UP
}
EOF
    "$CADDY" run --config "$DIR/Caddyfile-tls" --adapter caddyfile >"$DIR/caddy-tls.log" 2>&1 &
    pids+=($!)
    add_tls_target caddy "https://localhost:$port/bench/x" "$!"
    wait_https "https://localhost:$port/bench/x" "caddy (TLS)"
  fi
}
[[ -z "$want_tls" ]] || start_tls_targets

# --- measuring -----------------------------------------------------------------
# to_ms <wrk duration like 512.00us / 1.20ms / 2.00s>
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
    printf "%.3f", n }'
}

RES="$DIR/results.tsv" # scenario target round rps p50ms p99ms requests cpu_ticks rss_kib
: >"$RES"

# TOOL: wrk (keep-alive), wrk-close (a new connection per request) or h2load.
TOOL=wrk
run_one() { # scenario, index, round
  local name="${names[$2]}" url="${urls[$2]}" pid="${tpids[$2]}" out c0 c1 rps p50 p99 reqs
  c0="$(cpu_ticks "$pid")"
  local hdr=()
  [[ -n "${hdrs[$2]:-}" ]] && hdr=(-H "${hdrs[$2]}")
  [[ "$TOOL" == wrk-close ]] && hdr=(-H "Connection: close")
  if [[ "$TOOL" == h2load ]]; then
    local log="$DIR/h2load-requests.log"
    out="$(h2load -t"$THREADS" -c"$H2_CONNS" -m"$H2_STREAMS" -D "$DURATION" --log-file="$log" "$url" 2>&1)" || {
      echo "h2load failed against $name: $out" >&2
      return 1
    }
    c1="$(cpu_ticks "$pid")"
    # finished in 5.00s, 12345.60 req/s, 1.23MB/s
    rps="$(awk '/^finished in/ {print $4}' <<<"$out")"
    # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
    reqs="$(awk '/^requests:/ {print $8}' <<<"$out")"
    if ! grep -q '^requests: .* 0 failed, 0 errored, 0 timeout' <<<"$out" || ! grep -q 'status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx' <<<"$out"; then
      echo "warning: $name: $(grep -E '^(requests|status codes):' <<<"$out" | tr '\n' ' ')" >&2
    fi
    # --log-file: start (µs since the epoch), status, µs to the end of the response
    read -r p50 p99 < <(awk -F'\t' '{print $3}' "$log" | sort -n | awk '{v[NR] = $1} END {
      if (NR == 0) { print "0 0"; exit }
      i50 = int(NR * 0.50); if (i50 < 1) i50 = 1; i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
      printf "%.3f %.3f\n", v[i50] / 1000, v[i99] / 1000 }')
    rm -f "$log"
  else
    local lua=() thr="$THREADS"
    [[ -n "${WRK_SCRIPT:-}" ]] && lua=(-s "$WRK_SCRIPT")
    ((thr > CONNS)) && thr="$CONNS"
    out="$(wrk -t"$thr" -c"$CONNS" -d"$DURATION" --latency "${lua[@]}" "${hdr[@]}" "$url" 2>&1)" || {
      echo "wrk failed against $name: $out" >&2
      return 1
    }
    c1="$(cpu_ticks "$pid")"
    if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
      echo "warning: $name: $(grep 'Non-2xx\|Socket errors' <<<"$out" | tr -s ' ')" >&2
    fi
    rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
    reqs="$(awk '/requests in/ {print $1}' <<<"$out")"
    p50="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")"
    p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$name" "$3" "$rps" "$p50" "$p99" "$reqs" \
    "$((c1 - c0))" "$(peak_rss_kib "$pid")" >>"$RES"
  printf '  %-14s round %d: %10.0f req/s  p50 %s ms  p99 %s ms\n' "$name" "$3" "$rps" "$p50" "$p99" >&2
}

report() { # scenario [tls]: with tls, ratios are Portico's req/s over each target's
  local how="wrk -t$THREADS -c$CONNS -d$DURATION --latency"
  case "$1" in
    https) how="HTTPS keep-alive, HTTP/1.1: $how https://" ;;
    h2) how="HTTP/2 over TLS: h2load -t$THREADS -c$H2_CONNS -m$H2_STREAMS -D $DURATION" ;;
    handshake) how="a new connection and resumed TLS 1.3 handshake per request: $how -H 'Connection: close' https://" ;;
  esac
  echo
  echo "scenario: $1   ($how, $ROUNDS rounds, median req/s; $(nproc) cores)"
  if [[ "${2:-}" == tls ]]; then
    report_tls "$1"
    return
  fi
  awk -F'\t' -v sc="$1" -v tick="$TICK" -v order="${names[*]}" "$MEDIAN_AWK"'
    $1 == sc {
      rps[$2] = rps[$2] " " $4; p50[$2] = p50[$2] " " $5; p99[$2] = p99[$2] " " $6
      req[$2] += $7; cpu[$2] += $8; if ($9 > rss[$2]) rss[$2] = $9
    }
    END {
      n = split(order, t, " ")
      for (i = 1; i <= n; i++) if (t[i] in rps) { r[t[i]] = median(rps[t[i]]) }
      best = ""; for (i = 1; i <= n; i++) {
        x = t[i]; if ((x == "go-stdlib" || x == "traefik" || x == "caddy") && (x in r) && (best == "" || r[x] > r[best])) best = x
      }
      printf "%-14s %10s %9s %9s %11s %9s %8s %8s\n", "target", "req/s", "p50 ms", "p99 ms", "CPU us/req", "RSS MiB", "vs dir", "vs nginx"
      for (i = 1; i <= n; i++) {
        x = t[i]; if (!(x in r)) continue
        cpr = req[x] ? cpu[x] / tick * 1e6 / req[x] : 0
        printf "%-14s %10.0f %9.3f %9.3f %11.1f %9.1f %8s %8s\n", x, r[x], median(p50[x]), median(p99[x]), cpr, rss[x] / 1024, \
          ("direct" in r) ? sprintf("%.2f", r[x] / r["direct"]) : "-", ("nginx" in r) ? sprintf("%.2f", r[x] / r["nginx"]) : "-"
      }
      if (("portico" in r) && best != "")
        printf "portico vs best Go peer (%s): %.2f x req/s\n", best, r["portico"] / r[best]
      if (("portico" in r) && ("go-stdlib" in r) && median(p99["go-stdlib"]) > 0)
        printf "portico p99 / go-stdlib p99 at saturation: %.2f (issue 20 goal 1: <= 1.0)\n", median(p99["portico"]) / median(p99["go-stdlib"])
      print "(direct: the upstream alone, CPU/RSS are the upstream'"'"'s; proxies: CPU and RSS of the proxy only)"
    }' "$RES"
}

report_tls() { # scenario
  awk -F'\t' -v sc="$1" -v tick="$TICK" -v order="${names[*]}" "$MEDIAN_AWK"'
    $1 == sc {
      rps[$2] = rps[$2] " " $4; p50[$2] = p50[$2] " " $5; p99[$2] = p99[$2] " " $6
      req[$2] += $7; cpu[$2] += $8; if ($9 > rss[$2]) rss[$2] = $9
    }
    END {
      n = split(order, t, " ")
      for (i = 1; i <= n; i++) if (t[i] in rps) { r[t[i]] = median(rps[t[i]]) }
      printf "%-12s %10s %9s %9s %11s %9s %12s\n", "target", "req/s", "p50 ms", "p99 ms", "CPU us/req", "RSS MiB", "portico/this"
      for (i = 1; i <= n; i++) {
        x = t[i]; if (!(x in r)) continue
        cpr = req[x] ? cpu[x] / tick * 1e6 / req[x] : 0
        printf "%-12s %10.0f %9.3f %9.3f %11.1f %9.1f %12s\n", x, r[x], median(p50[x]), median(p99[x]), cpr, rss[x] / 1024, \
          (("portico" in r) && r[x] > 0) ? sprintf("%.2f", r["portico"] / r[x]) : "-"
      }
      if (("portico" in r) && ("traefik" in r) && r["traefik"] > 0)
        printf "portico vs traefik: %.2f x req/s (target >= 1.25)\n", r["portico"] / r["traefik"]
      print "(portico/this: Portico'"'"'s req/s over the target'"'"'s; CPU and RSS of the proxy only; one certificate, ECDSA P-256)"
    }' "$RES"
}

run_scenario() { # scenario
  echo "== scenario $1 ==" >&2
  local round i
  for ((round = 1; round <= ROUNDS; round++)); do
    for i in "${!names[@]}"; do run_one "$1" "$i" "$round"; done
  done
}

# Scenario routes10k: ROUTES extra routes loaded through PUT /v1/config, traffic on
# one of them; only Portico is measured (the others do not have a route table).
load_routes() {
  local cfg="$DIR/config.json" ver
  [[ -s "$DIR/config.orig.json" ]] || curl -fsS "http://$CP/v1/config" -o "$DIR/config.orig.json"
  python3 - "$DIR/config.orig.json" "$cfg" "$ROUTES" <<'PY'
import json, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
doc = json.load(open(src))
cfg = doc["config"] if "config" in doc else doc  # the export wraps it with its revision
routes = cfg.get("routes") or []
proto = next(r for r in routes if r.get("name") == "bench")
for i in range(n):
    r = {k: v for k, v in proto.items() if k not in ("version", "revision", "created_at", "updated_at")}
    r["name"] = "r%05d" % i
    r["paths"] = ["/svc%05d/items/{id}" % i]
    routes.append(r)
cfg["routes"] = routes
json.dump(doc, open(dst, "w"))
PY
  curl -fsS -X PUT "http://$CP/v1/config" -H 'Content-Type: application/json' --data-binary "@$cfg" >/dev/null
  ver="$(printf '/svc%05d/items/42' $((ROUTES / 2)))"
  wait_http "http://$DP$ver" "route $ver"
  names=(direct portico) urls=("http://$UP$ver" "http://$DP$ver") tpids=("$UP_PID" "$DP_PID") hdrs=("" "")
}

# Scenario full (issue 7's scenario 2): a second data plane with Redis and
# tracing at 1% (OTLP/HTTP to the bench upstream, which discards it), a route
# with JWT (HS256) authentication and a Redis rate limit per consumer set
# high enough never to refuse. Measured side by side with the first data
# plane's plain route, in the same rounds, so the CPU ratio compares like
# with like.
start_full() {
  bash scripts/ensure-redis.sh
  local rport dp2 ops2 secret token
  rport="$(free_port)"
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >"$DIR/redis.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
  secret="bench-secret-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  curl -fsS -X PUT "http://$CP/v1/issuers/bench" -H 'Content-Type: application/json' \
    -d "{\"issuer\":\"https://bench.invalid\",\"algorithms\":[\"HS256\"],\"keys\":[\"$secret\"]}" >/dev/null
  curl -fsS -X PUT "http://$CP/v1/consumers/bench" -H 'Content-Type: application/json' -d '{"jwt_issuers":["bench"]}' >/dev/null
  curl -fsS -X PUT "http://$CP/v1/routes/full" -H 'Content-Type: application/json' \
    -d '{"paths":["/full/*"],"service":"bench","auth":{"jwt":true},"rate_limit":{"limit":1000000000,"window":"1m","key":"consumer"}}' >/dev/null
  token="$(python3 - "$secret" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"iss": "https://bench.invalid", "sub": "bench", "exp": int(time.time()) + 3600}).encode())
sig = hmac.new(sys.argv[1].encode(), (head + "." + body).encode(), hashlib.sha256).digest()
print(head + "." + body + "." + b64(sig))
PY
)"
  dp2="127.0.0.1:$(free_port)"
  ops2="127.0.0.1:$(free_port)"
  OTEL_SERVICE_NAME=portico-bench OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01 \
    OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf OTEL_EXPORTER_OTLP_ENDPOINT="http://$UP" \
    "$BIN/dataplane" --controlplane "http://$CP" --listen "$dp2" --ops-listen "$ops2" --state-dir "$DIR/dataplane2" \
    --node-id bench-2 --access-log off --log-level warn --redis "redis://127.0.0.1:$rport" >"$DIR/dataplane2.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_http "http://$ops2/readyz" "data plane 2"
  curl -fsS -o /dev/null -H "Authorization: Bearer $token" "http://$dp2/full/x" ||
    { echo "the full-chain route does not answer 200; see $DIR/dataplane2.log" >&2; exit 1; }
  names=(portico portico-full) urls=("http://$DP/bench/x" "http://$dp2/full/x") tpids=("$DP_PID" "$pid")
  hdrs=("" "Authorization: Bearer $token")
}

# Scenario groups (issue 20, goal 1a): the plain route through Go's
# ReverseProxy and through another Portico data plane, each started with
# setsid. With kernel.sched_autogroup_enabled=1 a session is a CPU group of
# its own, shared fairly against wrk's and the upstream's, the way a service
# under systemd or a container runtime gets a cgroup; the plain scenario's
# targets all share the shell's group. Each pair runs with Go's default
# GOMAXPROCS (one per core) and with GOMAXPROCS=1.
start_groups() {
  local g port ops pid
  names=() urls=() tpids=() hdrs=()
  for g in cores 1; do
    local genv=()
    [[ "$g" == 1 ]] && genv=(GOMAXPROCS=1)
    port="$(free_port)"
    env "${genv[@]}" setsid "$DIR/bench-stdlibproxy" --listen "127.0.0.1:$port" --upstream "http://$UP" \
      >"$DIR/stdlibproxy-group-$g.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_http "http://127.0.0.1:$port/" "stdlib proxy (own group, GOMAXPROCS $g)"
    add_target "go-stdlib/gmp-$g" "http://127.0.0.1:$port/bench/x" "$pid"
    port="$(free_port)" ops="127.0.0.1:$(free_port)"
    env "${genv[@]}" setsid "$BIN/dataplane" --controlplane "http://$CP" --listen "127.0.0.1:$port" --ops-listen "$ops" \
      --state-dir "$DIR/dataplane-group-$g" --node-id "bench-group-$g" --access-log off --log-level warn \
      >"$DIR/dataplane-group-$g.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_http "http://$ops/readyz" "data plane (own group, GOMAXPROCS $g)"
    wait_http "http://127.0.0.1:$port/bench/x" "portico route (own group, GOMAXPROCS $g)"
    add_target "portico/gmp-$g" "http://127.0.0.1:$port/bench/x" "$pid"
  done
}

report_groups() {
  echo "(each proxy in a CPU group of its own: setsid, kernel.sched_autogroup_enabled=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo '?'); gmp-cores: Go's default GOMAXPROCS=$(nproc), gmp-1: GOMAXPROCS=1)"
  awk -F'\t' "$MEDIAN_AWK"'
    $1 == "groups" { p99[$2] = p99[$2] " " $6 }
    END {
      split("cores 1", g, " ")
      for (i = 1; i <= 2; i++) {
        a = "portico/gmp-" g[i]; b = "go-stdlib/gmp-" g[i]
        if ((a in p99) && (b in p99) && median(p99[b]) > 0)
          printf "GOMAXPROCS %s: portico p99 / go-stdlib p99 at saturation, each in its own CPU group: %.2f (issue 20 goal 1: <= 1.0)\n", g[i], median(p99[a]) / median(p99[b])
      }
    }' "$RES"
}

report_full() {
  awk -F'\t' -v tick="$TICK" '
    $1 == "full" { req[$2] += $7; cpu[$2] += $8 }
    END {
      if (req["portico"] && req["portico-full"]) {
        a = cpu["portico"] / tick * 1e6 / req["portico"]; b = cpu["portico-full"] / tick * 1e6 / req["portico-full"]
        printf "full chain (JWT + Redis rate limit + 1%% tracing) vs plain route: %.2f x CPU per request (target <= 1.2)\n", b / a
      }
    }' "$RES"
}

# --- curves (issue 20): one variable at a time -----------------------------------
# The plain targets, kept so that each curve picks the ones that can do its work.
plain_names=("${names[@]}") plain_urls=("${urls[@]}") plain_tpids=("${tpids[@]}") plain_hdrs=("${hdrs[@]}")
pick_targets() { # name...: names/urls/tpids/hdrs become those plain targets (the ones running)
  names=() urls=() tpids=() hdrs=()
  local want i
  for want in "$@"; do
    for i in "${!plain_names[@]}"; do
      [[ "${plain_names[$i]}" == "$want" ]] || continue
      add_target "${plain_names[$i]}" "${plain_urls[$i]}" "${plain_tpids[$i]}" "${plain_hdrs[$i]}"
    done
  done
}
restore_targets() { pick_targets "${plain_names[@]}"; }
CURVE_TARGETS="${CURVE_TARGETS:-nginx portico traefik}"
CURVE_POINTS=() # scenario names of the curve points run, in order

# report_curve <title> <scenario...>: one table, a row per point and target.
report_curve() {
  local title="$1"
  shift
  echo
  echo "curve: $title   ($ROUNDS rounds of $DURATION, median req/s and latencies; $(nproc) cores)"
  awk -F'\t' -v tick="$TICK" -v points="$*" -v order="${plain_names[*]} portico-keys" "$MEDIAN_AWK"'
    { k = $1 SUBSEP $2; rps[k] = rps[k] " " $4; p50[k] = p50[k] " " $5; p99[k] = p99[k] " " $6; req[k] += $7; cpu[k] += $8 }
    END {
      printf "%-14s %-14s %10s %9s %9s %11s %9s\n", "point", "target", "req/s", "p50 ms", "p99 ms", "CPU us/req", "vs nginx"
      np = split(points, P, " "); nt = split(order, T, " ")
      for (i = 1; i <= np; i++) for (j = 1; j <= nt; j++) {
        k = P[i] SUBSEP T[j]; if (!(k in rps)) continue
        ng = P[i] SUBSEP "nginx"
        printf "%-14s %-14s %10.0f %9.3f %9.3f %11.1f %9s\n", P[i], T[j], median(rps[k]), median(p50[k]), median(p99[k]), \
          req[k] ? cpu[k] / tick * 1e6 / req[k] : 0, (ng in rps) && T[j] != "nginx" ? sprintf("%.2f", median(rps[k]) / median(rps[ng])) : "-"
      }
    }' "$RES"
}

# Scenario conns: req/s and p99 for CURVE_CONNS concurrent keep-alive connections.
run_conns() {
  local c saved="$CONNS" pts=()
  pick_targets $CURVE_TARGETS
  for c in ${CURVE_CONNS:-1 64 512 4096}; do
    CONNS="$c"
    run_scenario "conns-$c"
    pts+=("conns-$c")
  done
  CONNS="$saved"
  restore_targets
  report_curve "concurrent connections (wrk -c N, plain route)" "${pts[@]}" >>"$DIR/report.txt"
}

# Scenario bodies: CURVE_BODIES bytes sent (POST, a wrk Lua script) and received
# (the upstream answers ?size=N), one direction at a time.
run_bodies() {
  local b pts=() i
  pick_targets $CURVE_TARGETS
  local base_urls=("${urls[@]}")
  for b in ${CURVE_BODIES:-1024 65536 1048576}; do
    WRK_SCRIPT="$DIR/post-$b.lua"
    printf 'wrk.method = "POST"\nwrk.body = string.rep("x", %d)\nwrk.headers["Content-Type"] = "application/octet-stream"\n' "$b" >"$WRK_SCRIPT"
    run_scenario "req-$b"
    WRK_SCRIPT=""
    for i in "${!urls[@]}"; do urls[$i]="${base_urls[$i]}?size=$b"; done
    run_scenario "resp-$b"
    urls=("${base_urls[@]}")
    pts+=("req-$b" "resp-$b")
  done
  restore_targets
  report_curve "bodies (req-N: N-byte POST bodies; resp-N: N-byte answers; wrk -c$CONNS)" "${pts[@]}" >>"$DIR/report.txt"
}

# Scenario routes: CURVE_ROUTES routes loaded (PUT /v1/config), traffic on the
# middle one; Portico only. The live heap after each load (after a forced
# collection: the bench data plane runs with --ops-pprof) gives bytes per route.
rss_kib() { # the current resident set of a process tree
  local sum=0 p v
  for p in $(proc_pids "$1"); do
    v="$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)" || continue
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
live_heap_kib() { # the bench data plane's heap after a full collection (the profiler's ?gc=1 runs one)
  curl -fsS -o /dev/null "http://$OPS/debug/pprof/heap?gc=1"
  curl -fsS "http://$OPS/metrics" | awk '/^go_memstats_heap_inuse_bytes / {printf "%d\n", $2 / 1024}'
}
run_routes() {
  local n pts=() saved="$ROUTES" mem=()
  for n in ${CURVE_ROUTES:-10 1000 100000}; do
    ROUTES="$n"
    load_routes
    mem+=("$n $(live_heap_kib)")
    run_scenario "routes-$n"
    pts+=("routes-$n")
  done
  ROUTES="$saved"
  restore_targets
  {
    report_curve "routes loaded (traffic on one; Portico only)" "${pts[@]}"
    printf '%s\n' "${mem[@]}" | awk '
      NR == 1 { n0 = $1; r0 = $2 } { printf "portico live heap with %d routes: %.1f MiB\n", $1, $2 / 1024; n = $1; r = $2 }
      END { if (n > n0) printf "memory per route: %.0f bytes (between %d and %d routes)\n", (r - r0) * 1024 / (n - n0), n0, n }'
  } >>"$DIR/report.txt"
}

# Scenario keys: a Redis rate limit keyed by a header, with 1 and 1,000 distinct
# keys (wrk cycles through them: at these rates each of the 1,000 is seen
# every second), on a data plane of its own with Redis and no tracing.
KEYS_DP="" KEYS_PID=""
start_keys() {
  bash scripts/ensure-redis.sh
  local rport ops3
  rport="$(free_port)"
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >"$DIR/redis-keys.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS -X PUT "http://$CP/v1/routes/keys" -H 'Content-Type: application/json' \
    -d '{"paths":["/keys/*"],"service":"bench","rate_limit":{"limit":1000000000,"window":"1m","key":"header:X-Bench-Key"}}' >/dev/null
  KEYS_DP="127.0.0.1:$(free_port)"
  ops3="127.0.0.1:$(free_port)"
  "$BIN/dataplane" --controlplane "http://$CP" --listen "$KEYS_DP" --ops-listen "$ops3" --state-dir "$DIR/dataplane3" \
    --node-id bench-3 --access-log off --log-level warn --redis "redis://127.0.0.1:$rport" >"$DIR/dataplane3.log" 2>&1 &
  KEYS_PID=$!
  pids+=("$KEYS_PID")
  wait_http "http://$ops3/readyz" "data plane 3"
  wait_http "http://$KEYS_DP/keys/x" "the rate-limited route"
}
run_keys() {
  local k pts=()
  [[ -n "$KEYS_DP" ]] || start_keys
  names=(portico-keys) urls=("http://$KEYS_DP/keys/x") tpids=("$KEYS_PID") hdrs=("")
  for k in 1 1000; do
    WRK_SCRIPT="$DIR/keys-$k.lua"
    printf 'local n, i = %d, 0\nrequest = function()\n  i = i %% n + 1\n  wrk.headers["X-Bench-Key"] = "k" .. i\n  return wrk.format()\nend\n' "$k" >"$WRK_SCRIPT"
    run_scenario "keys-$k"
    pts+=("keys-$k")
  done
  WRK_SCRIPT=""
  restore_targets
  report_curve "distinct rate-limit keys (Redis, key header:X-Bench-Key)" "${pts[@]}" >>"$DIR/report.txt"
}

# Scenario rate (issue 20 goal 1): a fixed request rate, RATE_SHARE percent
# (50) of Portico's saturation measured just before, sent open-loop by vegeta
# to every plain target; p99 should be within 1.5x nginx's.
run_rate() {
  local vegeta sat rate round i out name url pid c0 c1
  vegeta="$(bash scripts/ensure-vegeta.sh)"
  pick_targets portico
  sat="$(wrk -t"$THREADS" -c"$CONNS" -d3s "${urls[0]}" | awk '/^Requests\/sec:/ {print int($2)}')"
  rate=$((sat * ${RATE_SHARE:-50} / 100))
  restore_targets
  echo "== scenario rate: $rate req/s (${RATE_SHARE:-50}% of Portico's $sat) ==" >&2
  for ((round = 1; round <= ROUNDS; round++)); do
    for i in "${!names[@]}"; do
      name="${names[$i]}" url="${urls[$i]}" pid="${tpids[$i]}"
      [[ "$name" == direct ]] && continue
      c0="$(cpu_ticks "$pid")"
      # At most CONNS connections and workers, as wrk's: unbounded, a target
      # that falls behind makes vegeta open connections by the thousand,
      # and the box (ports, CPU) then fails every later target too.
      out="$(echo "GET $url" | "$vegeta" attack -rate="$rate/s" -duration="$DURATION" -timeout=10s \
        -max-connections="$CONNS" -connections="$CONNS" -workers="$CONNS" -max-workers="$CONNS" | "$vegeta" report -type=json)"
      c1="$(cpu_ticks "$pid")"
      read -r rps p50 p99 reqs ok < <(python3 -c '
import json, sys
r = json.load(sys.stdin); l = r["latencies"]
print("%.1f %.3f %.3f %d %.4f" % (r["throughput"], l["50th"] / 1e6, l["99th"] / 1e6, r["requests"], r["success"]))' <<<"$out")
      [[ "$ok" == 1.0000 ]] || echo "warning: $name: success ratio $ok" >&2
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' rate "$name" "$round" "$rps" "$p50" "$p99" "$reqs" \
        "$((c1 - c0))" "$(peak_rss_kib "$pid")" >>"$RES"
      printf '  %-12s round %d: %10.0f req/s  p50 %s ms  p99 %s ms\n' "$name" "$round" "$rps" "$p50" "$p99" >&2
    done
  done
  {
    report_curve "fixed rate: $rate req/s open-loop (vegeta), ${RATE_SHARE:-50}% of Portico's saturation" rate
    awk -F'\t' "$MEDIAN_AWK"'
      $1 == "rate" { v[$2] = v[$2] " " $6 }
      END { if (("portico" in v) && ("nginx" in v)) printf "portico p99 / nginx p99 at a fixed rate: %.2f (issue 20 goal 1: <= 1.5)\n", median(v["portico"]) / median(v["nginx"]) }' "$RES"
  } >>"$DIR/report.txt"
}

# Scenario idle: resident memory per idle keep-alive connection (IDLE_CONNS
# connections that each made one request and then wait).
run_idle() {
  local n="${IDLE_CONNS:-2000}" i before after
  : >"$DIR/idle.txt"
  for i in "${!plain_names[@]}"; do
    [[ "${plain_names[$i]}" == direct ]] && continue
    before="$(rss_kib "${plain_tpids[$i]}")"
    after="$(python3 - "${plain_urls[$i]}" "$n" "${plain_tpids[$i]}" <<'PY'
import socket, sys, time, urllib.parse, subprocess
u = urllib.parse.urlsplit(sys.argv[1]); n = int(sys.argv[2]); pid = sys.argv[3]
req = ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (u.path, u.netloc)).encode()
socks = []
for _ in range(n):
    s = socket.create_connection((u.hostname, u.port)); s.sendall(req); socks.append(s)
for s in socks:
    s.settimeout(10); s.recv(65536)
time.sleep(2)
out = subprocess.run(["bash", "-c", "for p in %s $(pgrep -P %s); do awk '/^VmRSS:/ {print $2}' /proc/$p/status; done" % (pid, pid)], capture_output=True, text=True).stdout
print(sum(int(x) for x in out.split()))
for s in socks: s.close()
PY
)"
    printf '%s\t%s\t%s\n' "${plain_names[$i]}" "$before" "$after" >>"$DIR/idle.txt"
    sleep 1
  done
  {
    echo
    echo "idle keep-alive connections: resident memory with $n open (each made one request)"
    awk -F'\t' -v n="$n" '{ printf "%-12s %8.1f MiB -> %8.1f MiB: %6.1f KiB per connection\n", $1, $2 / 1024, $3 / 1024, ($3 - $2) / n }' "$DIR/idle.txt"
  } >>"$DIR/report.txt"
}

for sc in $SCENARIOS; do
  case "$sc" in
    plain) run_scenario plain; report plain >>"$DIR/report.txt" ;;
    full)
      command -v python3 >/dev/null || { echo "skipped: full (needs python3)"; continue; }
      saved_names=("${names[@]}") saved_urls=("${urls[@]}") saved_tpids=("${tpids[@]}") saved_hdrs=("${hdrs[@]}")
      start_full
      run_scenario full
      { report full; report_full; } >>"$DIR/report.txt"
      names=("${saved_names[@]}") urls=("${saved_urls[@]}") tpids=("${saved_tpids[@]}") hdrs=("${saved_hdrs[@]}")
      ;;
    propagation)
      echo "== scenario propagation (make bench-propagation) ==" >&2
      { echo; echo "scenario: propagation (an admin write until all of 10 data planes serve it)"
        make -C "$ROOT" --no-print-directory bench-propagation 2>&1 | grep -E '^Benchmark' ; } >>"$DIR/report.txt"
      ;;
    https | h2 | handshake)
      saved_names=("${names[@]}") saved_urls=("${urls[@]}") saved_tpids=("${tpids[@]}") saved_hdrs=("${hdrs[@]}")
      names=("${tls_names[@]}") urls=("${tls_urls[@]}") tpids=("${tls_pids[@]}") hdrs=()
      case "$sc" in https) TOOL=wrk ;; h2) TOOL=h2load ;; handshake) TOOL=wrk-close ;; esac
      run_scenario "$sc"
      report "$sc" tls >>"$DIR/report.txt"
      TOOL=wrk
      names=("${saved_names[@]}") urls=("${saved_urls[@]}") tpids=("${saved_tpids[@]}") hdrs=("${saved_hdrs[@]}")
      ;;
    routes10k)
      command -v python3 >/dev/null || { echo "skipped: routes10k (needs python3)"; continue; }
      load_routes
      run_scenario routes10k
      report routes10k >>"$DIR/report.txt"
      ;;
    groups)
      saved_names=("${names[@]}") saved_urls=("${urls[@]}") saved_tpids=("${tpids[@]}") saved_hdrs=("${hdrs[@]}")
      start_groups
      run_scenario groups
      { report groups; report_groups; } >>"$DIR/report.txt"
      names=("${saved_names[@]}") urls=("${saved_urls[@]}") tpids=("${saved_tpids[@]}") hdrs=("${saved_hdrs[@]}")
      ;;
    conns) run_conns ;;
    bodies) run_bodies ;;
    routes) command -v python3 >/dev/null || { echo "skipped: routes (needs python3)"; continue; }; run_routes ;;
    keys) run_keys ;;
    rate) command -v python3 >/dev/null || { echo "skipped: rate (needs python3)"; continue; }; run_rate ;;
    idle) command -v python3 >/dev/null || { echo "skipped: idle (needs python3)"; continue; }; run_idle ;;
    curves) run_idle; run_routes; run_conns; run_bodies; run_keys; run_rate ;;
    *) echo "unknown scenario $sc" >&2; exit 2 ;;
  esac
done

# PROFILE=1: where the plain targets' CPU goes. One more wrk run per target
# (not part of the rounds above, so profiling does not bend their numbers):
# read and write system calls per request (syscr/syscw of /proc/<pid>/io,
# summed over the process tree), and CPU profiles of Portico and the
# prototype taken during their run.
sys_counts() { # pid: "reads writes" of the process tree
  local r=0 w=0 p a b
  for p in $(proc_pids "$1"); do
    a="$(awk '/^syscr:/ {print $2}' "/proc/$p/io" 2>/dev/null)" || continue
    b="$(awk '/^syscw:/ {print $2}' "/proc/$p/io" 2>/dev/null)" || continue
    r=$((r + ${a:-0})) w=$((w + ${b:-0}))
  done
  echo "$r $w"
}
mallocs() { # metrics URL: the process's go_memstats_mallocs_total (0 when none)
  curl -fsS "$1" 2>/dev/null | awk '$1 == "go_memstats_mallocs_total" {printf "%.0f", $2; found = 1} END {if (!found) print 0}'
}
if [[ "$PROFILE" == 1 && " $SCENARIOS " == *" plain "* ]]; then
  secs="${DURATION%s}"
  {
    echo
    echo "profile run (wrk -t$THREADS -c$CONNS -d$((secs + 1))s, one run per target, CPU profile of the last ${secs}s for portico and the prototypes)"
    printf '%-16s %10s %10s %10s %11s %10s\n' target req/s "reads/req" "writes/req" "CPU us/req" "allocs/req"
  } >>"$DIR/report.txt"
  for i in "${!plain_names[@]}"; do
    name="${plain_names[$i]}" pid="${plain_tpids[$i]}" prof="" metrics=""
    case "$name" in
      portico) prof="http://$OPS/debug/pprof/profile?seconds=$secs" metrics="http://$OPS/metrics" ;;
      fasthttp-proto) prof="http://$FP_PPROF/debug/pprof/profile?seconds=$secs" metrics="http://$FP_PPROF/metrics" ;;
      nbio-proto) prof="http://$NB_PPROF/debug/pprof/profile?seconds=$secs" metrics="http://$NB_PPROF/metrics" ;;
    esac
    m0=0 m1=0
    [[ -z "$metrics" ]] || m0="$(mallocs "$metrics")"
    read -r r0 w0 < <(sys_counts "$pid")
    c0="$(cpu_ticks "$pid")"
    curl_pid=""
    if [[ -n "$prof" ]]; then
      (sleep 1; curl -fsS -o "$DIR/cpu-$name.prof" "$prof") &
      curl_pid=$!
    fi
    out="$(wrk -t"$THREADS" -c"$CONNS" -d"$((secs + 1))s" "${plain_urls[$i]}" 2>&1)"
    read -r r1 w1 < <(sys_counts "$pid")
    c1="$(cpu_ticks "$pid")"
    [[ -z "$metrics" ]] || m1="$(mallocs "$metrics")"
    [[ -z "$curl_pid" ]] || wait "$curl_pid" || true
    reqs="$(awk '/requests in/ {print $1}' <<<"$out")"
    rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
    awk -v n="$name" -v q="$reqs" -v rps="$rps" -v r=$((r1 - r0)) -v w=$((w1 - w0)) -v c=$((c1 - c0)) -v tick="$TICK" \
      -v m=$((m1 - m0)) -v hasm="$metrics" \
      'BEGIN { printf "%-16s %10.0f %10.2f %10.2f %11.1f %10s\n", n, rps, r / q, w / q, c / tick * 1e6 / q, hasm == "" ? "-" : sprintf("%.1f", m / q) }' >>"$DIR/report.txt"
    if [[ -n "$prof" && -s "$DIR/cpu-$name.prof" ]]; then
      bin="$BIN/dataplane"
      [[ "$name" == portico ]] || bin="$DIR/bench-fastproxy"
      go tool pprof -top -nodecount=40 "$bin" "$DIR/cpu-$name.prof" >"$DIR/profile-$name.txt" 2>/dev/null || true
      echo "  $name: CPU profile $DIR/cpu-$name.prof, top functions $DIR/profile-$name.txt" >>"$DIR/report.txt"
    fi
  done
  echo "(reads/writes: syscr/syscw of /proc/<pid>/io, which count read(2), readv, write(2), writev and not recv/send: Go's sockets use read and write; nginx reads with recv and HAProxy uses recv/send, so theirs are not comparable; direct: the upstream's own; allocs: go_memstats_mallocs_total; set BENCH_DIR to keep the profiles)" >>"$DIR/report.txt"
fi

cat "$DIR/report.txt"
for s in "${skipped[@]}"; do echo "skipped: $s; see docs/PERFORMANCE.md"; done
