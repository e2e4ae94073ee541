#!/usr/bin/env bash
# scripts/bench-tail-ab.sh ROUNDS name=dataplane-binary...: interleaved A/B of
# data-plane builds against Go's ReverseProxy on the plain route, for tail
# latency (issue 20, goal 1; docs/PERFORMANCE.md). MODE=own (default) starts
# every server with setsid, so each is a CPU group of its own (autogroup);
# MODE=shared keeps them in this shell's group, as make bench-load does.
# Each round: wrk -t2 -c64 -d3s warm-up, then -d$D (5s) measured, with the
# proxy's CPU per request from /proc/<pid>/stat. TRACE=1 then takes a 3 s
# execution trace of each data plane under load into $OUT (for
# scripts/tracewait). Loopback only; everything is stopped at exit.
#
#   git stash; make build; cp bin/dataplane /tmp/dp-before; git stash pop; make build
#   scripts/bench-tail-ab.sh 5 before=/tmp/dp-before after=bin/dataplane
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:?usage: $0 ROUNDS name=dataplane-binary...}"
shift
D="${D:-5s}" MODE="${MODE:-own}" OUT="${OUT:-/tmp}"
W="$(mktemp -d /tmp/portico-tail.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
wait_http() { for _ in $(seq 150); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "nothing at $1" >&2; exit 1; }
launch() { if [[ "$MODE" == own ]]; then setsid "$@" & else "$@" & fi; pids+=($!); }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
go build -trimpath -o "$W/bench-upstream" ./dataplane/cmd/bench-upstream
go build -trimpath -o "$W/bench-stdlibproxy" ./dataplane/cmd/bench-stdlibproxy
[[ -x bin/controlplane ]] || { echo "missing bin/controlplane: run make build" >&2; exit 1; }

UP="127.0.0.1:$(port)"
launch "$W/bench-upstream" --listen "$UP" >"$W/up.log" 2>&1
wait_http "http://$UP/"
SP="127.0.0.1:$(port)"
launch "$W/bench-stdlibproxy" --listen "$SP" --upstream "http://$UP" >"$W/sp.log" 2>&1
wait_http "http://$SP/"
names=(go-stdlib) urls=("http://$SP/bench/x") tp=("${pids[-1]}") ops=("")
CP="127.0.0.1:$(port)"
launch bin/controlplane --dev --listen "$CP" --store "bolt:$W/cp.db" --log-level warn >"$W/cp.log" 2>&1
wait_http "http://$CP/healthz"
curl -fsS -X PUT "http://$CP/v1/services/bench" -H 'Content-Type: application/json' -d "{\"targets\":[{\"url\":\"http://$UP\",\"weight\":1}]}" >/dev/null
curl -fsS -X PUT "http://$CP/v1/routes/bench" -H 'Content-Type: application/json' -d '{"paths":["/bench/*"],"service":"bench"}' >/dev/null
for nb in "$@"; do
  n="${nb%%=*}" b="${nb#*=}" dp="127.0.0.1:$(port)" op="127.0.0.1:$(port)"
  launch "$b" --controlplane "http://$CP" --listen "$dp" --ops-listen "$op" --state-dir "$W/$n" --node-id "$n" \
    --access-log off --log-level warn --ops-pprof >"$W/$n.log" 2>&1
  wait_http "http://$op/readyz"
  wait_http "http://$dp/bench/x"
  names+=("$n") urls+=("http://$dp/bench/x") tp+=("${pids[-1]}") ops+=("$op")
done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for r in $(seq "$ROUNDS"); do
  for i in "${!names[@]}"; do
    wrk -t2 -c64 -d3s "${urls[$i]}" >/dev/null
    c0="$(ticks "${tp[$i]}")"
    out="$(wrk -t2 -c64 -d"$D" --latency "${urls[$i]}")"
    c1="$(ticks "${tp[$i]}")"
    awk -v name="${names[$i]}" -v r="$r" -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" '
      /Requests\/sec/ { rps = $2 } /requests in/ { n = $1 }
      $1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 }
      END { printf "%-10s round %d: %9s req/s  p50 %s  p99 %s  CPU %.1f us/req\n", name, r, rps, p50, p99, c / hz * 1e6 / n }' <<<"$out"
  done
done
if [[ "${TRACE:-}" == 1 ]]; then
  for i in "${!names[@]}"; do
    [[ -n "${ops[$i]}" ]] || continue
    wrk -t2 -c64 -d8s "${urls[$i]}" >/dev/null &
    w=$!
    sleep 3
    curl -fsS -o "$OUT/${names[$i]}.trace" "http://${ops[$i]}/debug/pprof/trace?seconds=3"
    wait "$w"
    echo "trace of ${names[$i]}: $OUT/${names[$i]}.trace"
  done
fi
