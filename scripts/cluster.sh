#!/usr/bin/env bash
# `make cluster`: a local twin of a production Portico deployment, as
# background processes on loopback, no Docker:
#
#   Consul (dev agent, UI)        127.0.0.1:8500, DNS on 127.0.0.1:8600
#   redis-server                  127.0.0.1:6379
#   2 control planes              127.0.0.1:9000, 127.0.0.1:9001 (Consul KV store, one prefix)
#   N data planes                 dp-N on 127.0.8.N:(8100+N), ops on 127.0.8.N:8200
#   demo services users, orders   127.0.0.1:9201, 127.0.0.1:9202, registered in Consul
#   HAProxy                       127.0.0.1:8080 (gateway), stats on 127.0.0.1:8404
#
# HAProxy finds the data planes in Consul's DNS; deployments/twin/haproxy.cfg.tmpl
# explains how, and why each data plane has its own loopback address.
#
# Usage:
#   scripts/cluster.sh up [N]    start whatever is not running; N data planes
#                                (default: the number last given to up or
#                                scale, else 2; a crashed one is restarted)
#   scripts/cluster.sh scale N   add or remove data planes (removed ones get
#                                SIGTERM and drain)
#   scripts/cluster.sh status    what runs
#   scripts/cluster.sh down      stop everything (SIGTERM, SIGKILL after a timeout)
#
# Every command can be re-run. Pids, logs and data live in .portico/cluster/;
# the tokens come from PORTICO_ADMIN_TOKEN / PORTICO_DATAPLANE_TOKEN, else
# are generated once into .portico/cluster/tokens.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

BIN="${BIN:-$ROOT/bin}"
DIR="${PORTICO_CLUSTER_DIR:-$ROOT/.portico/cluster}"
PIDS="$DIR/pids"
LOGS="$DIR/logs"
DATA="$DIR/data"
TOKENS="$DIR/tokens"
# WANT_DPS holds the number of data planes last asked for: counting the ones
# still running would take a crash for a decision to scale down.
WANT_DPS="$DIR/dataplanes"

CONSUL_HTTP=127.0.0.1:8500
CONSUL_DNS=127.0.0.1:8600
REDIS_PORT=6379
CP_ADDRS=(127.0.0.1:9000 127.0.0.1:9001)
USERS_ADDR=127.0.0.1:9201
ORDERS_ADDR=127.0.0.1:9202
FRONT=127.0.0.1:8080
STATS=127.0.0.1:8404
DP_NET=127.0.8    # data plane N listens on $DP_NET.N
DP_PORT_BASE=8100 # its traffic port is DP_PORT_BASE+N
DP_OPS_PORT=8200  # the same on every data plane: HAProxy's check port
MAX_DP=16         # HAProxy's server-template slots

log() { printf '%s\n' "$*" >&2; }
die() {
  log "cluster: $*"
  exit 1
}

# --- processes -------------------------------------------------------------
# A pid file holds "PID EXECUTABLE". A pid is signalled only while it still
# runs that executable, so a stale file never gets an unrelated process
# (one that reused the pid) killed.

pidfile() { echo "$PIDS/$1.pid"; }

# running NAME: true when NAME's recorded process is alive and ours.
running() {
  local f pid exe cur
  f="$(pidfile "$1")"
  [[ -s "$f" ]] || return 1
  read -r pid exe <"$f" || return 1
  [[ -n "$pid" && -r "/proc/$pid/exe" ]] || return 1
  cur="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1
  # `make build` replaces binaries under running processes.
  [[ "${cur% (deleted)}" == "$exe" ]]
}

pid_of() {
  local p _exe
  read -r p _exe <"$(pidfile "$1")" && echo "$p"
}

# spawn NAME [K=V...] -- BINARY [ARGS...]: run BINARY in the background with
# the extra environment, in its own session (so that Ctrl-C in the shell
# that ran `make cluster` does not reach it), output appended to
# logs/NAME.log. Secrets go through the environment, never on the command
# line, which anyone can read in /proc.
spawn() {
  local name="$1" envs=() bin
  shift
  while [[ "$1" != -- ]]; do
    envs+=("$1")
    shift
  done
  bin="$2"
  shift 2
  printf '==> %s %s: %s %s\n' "$(date -Is)" "$name" "$bin" "$*" >>"$LOGS/$name.log"
  # env and setsid exec in place (setsid forks only in a process group
  # leader, which a background job of a script is not), so $! is the pid of
  # the server itself. Run as named (Debian's redis-server is a symlink whose
  # behaviour depends on argv[0]); recorded resolved, as /proc shows it.
  env "${envs[@]+"${envs[@]}"}" setsid "$bin" "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
  echo "$! $(readlink -f "$bin")" >"$(pidfile "$name")"
}

# stop NAME...: SIGTERM to each running one, SIGKILL to those still there
# after STOP_TIMEOUT seconds; pid files are removed either way.
stop() {
  local name pid live=()
  for name in "$@"; do
    if running "$name"; then
      pid="$(pid_of "$name")"
      kill -TERM "$pid" 2>/dev/null || true
      live+=("$name")
    else
      rm -f "$(pidfile "$name")"
    fi
  done
  local deadline=$((SECONDS + ${STOP_TIMEOUT:-20}))
  while ((${#live[@]})); do
    local still=()
    for name in "${live[@]}"; do
      if running "$name"; then still+=("$name"); else rm -f "$(pidfile "$name")"; fi
    done
    live=("${still[@]+"${still[@]}"}")
    ((${#live[@]})) || break
    if ((SECONDS >= deadline)); then
      for name in "${live[@]}"; do
        log "  $name did not stop within ${STOP_TIMEOUT:-20}s of SIGTERM: SIGKILL"
        kill -KILL "$(pid_of "$name")" 2>/dev/null || true
        rm -f "$(pidfile "$name")"
      done
      break
    fi
    sleep 0.1
  done
}

# port_busy HOST:PORT: something accepts TCP connections there.
port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

need_port() { # HOST:PORT NAME
  if port_busy "$1"; then
    die "$1 (for $2) is taken by a process this script did not start; stop it, then run this again"
  fi
}

# wait_for WHAT TIMEOUT_S COMMAND...: poll COMMAND every 0.1s.
wait_for() {
  local what="$1" timeout="$2"
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      die "$what not ready after ${timeout}s; logs are in $LOGS"
    fi
    sleep 0.1
  done
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }

# --- tokens ----------------------------------------------------------------

load_tokens() {
  if [[ ! -s "$TOKENS" ]]; then
    local a d
    a="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
    d="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
    (
      umask 077
      printf 'PORTICO_ADMIN_TOKEN=%s\nPORTICO_DATAPLANE_TOKEN=%s\n' "$a" "$d" >"$TOKENS"
    )
  fi
  local file_admin file_dp
  file_admin="$(sed -n 's/^PORTICO_ADMIN_TOKEN=//p' "$TOKENS")"
  file_dp="$(sed -n 's/^PORTICO_DATAPLANE_TOKEN=//p' "$TOKENS")"
  ADMIN_TOKEN="${PORTICO_ADMIN_TOKEN:-$file_admin}"
  DP_TOKEN="${PORTICO_DATAPLANE_TOKEN:-$file_dp}"
  [[ -n "$ADMIN_TOKEN" && -n "$DP_TOKEN" ]] || die "no tokens in the environment nor in $TOKENS"
}

# --- components ------------------------------------------------------------

start_consul() {
  running consul && return
  need_port "$CONSUL_HTTP" consul
  local consul
  consul="$(scripts/ensure-consul.sh)"
  log "starting consul"
  # -dev keeps everything in memory: `down` then `up` is a clean slate.
  # DNS on 8600 for HAProxy; only_passing also leaves out instances whose
  # checks merely warn.
  spawn consul -- "$consul" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -ui \
    -http-port "${CONSUL_HTTP##*:}" -dns-port "${CONSUL_DNS##*:}" -grpc-port -1 \
    -hcl 'dns_config { only_passing = true }' -hcl 'disable_update_check = true' -log-level warn
  wait_for "consul leader" 30 consul_leader
}

consul_leader() {
  local leader
  leader="$(curl -fsS --max-time 2 "http://$CONSUL_HTTP/v1/status/leader")" && [[ "$leader" == *:* ]]
}

start_redis() {
  running redis && return
  need_port "127.0.0.1:$REDIS_PORT" redis-server
  scripts/ensure-redis.sh
  log "starting redis-server"
  mkdir -p "$DATA/redis"
  # Rate-limit counters live for one window: nothing is worth persisting.
  spawn redis -- "$(command -v redis-server)" --port "$REDIS_PORT" --bind 127.0.0.1 \
    --save '' --appendonly no --dir "$DATA/redis" --daemonize no
  wait_for "redis-server" 10 redis_ping
}

redis_ping() (
  # A subshell: a failed connect must not take the script's descriptors
  # (or the script) with it.
  exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" || exit 1
  printf 'PING\r\n' >&3
  read -r -t 2 line <&3 && [[ "$line" == +PONG* ]]
)

start_controlplanes() {
  local i addr
  for i in "${!CP_ADDRS[@]}"; do
    addr="${CP_ADDRS[$i]}"
    running "cp-$((i + 1))" && continue
    need_port "$addr" "cp-$((i + 1))"
    log "starting control plane cp-$((i + 1)) on $addr"
    # Both on one KV prefix: writes through either are seen by both.
    spawn "cp-$((i + 1))" "PORTICO_ADMIN_TOKEN=$ADMIN_TOKEN" "PORTICO_DATAPLANE_TOKEN=$DP_TOKEN" -- \
      "$BIN/controlplane" --listen "$addr" --store "consul://$CONSUL_HTTP/portico" \
      --consul "$CONSUL_HTTP" --log-level info
  done
  for addr in "${CP_ADDRS[@]}"; do wait_for "control plane $addr" 30 http_ok "http://$addr/readyz"; done
}

start_upstreams() {
  local name addr
  for name in users orders; do
    running "$name" && continue
    addr=$USERS_ADDR
    [[ $name == orders ]] && addr=$ORDERS_ADDR
    need_port "$addr" "$name"
    log "starting demo service $name on $addr"
    spawn "$name" -- "$BIN/demo-upstream" --listen "$addr" --name "$name" \
      --consul "$CONSUL_HTTP" --service "$name" --tags demo
  done
  wait_for "demo service users" 15 http_ok "http://$USERS_ADDR/healthz"
  wait_for "demo service orders" 15 http_ok "http://$ORDERS_ADDR/healthz"
}

haproxy_bin() {
  # Debian installs it in /usr/sbin, which is not on every user's PATH.
  command -v haproxy 2>/dev/null || { [[ -x /usr/sbin/haproxy ]] && echo /usr/sbin/haproxy; }
}

start_haproxy() {
  running haproxy && return
  need_port "$FRONT" haproxy
  need_port "$STATS" "haproxy stats"
  scripts/ensure-haproxy.sh
  local hap cfg="$DIR/haproxy.cfg"
  hap="$(haproxy_bin)" || die "haproxy not found after scripts/ensure-haproxy.sh"
  sed -e "s#@FRONT@#$FRONT#g" -e "s#@STATS@#$STATS#g" -e "s#@SOCKET@#$DIR/haproxy.sock#g" \
    -e "s#@CONSUL_DNS@#$CONSUL_DNS#g" -e "s#@OPS_PORT@#$DP_OPS_PORT#g" \
    deployments/twin/haproxy.cfg.tmpl >"$cfg"
  "$hap" -c -q -f "$cfg" || die "invalid HAProxy configuration $cfg"
  log "starting haproxy on $FRONT"
  # -db: foreground, warnings (servers up/down) to the log.
  spawn haproxy -- "$hap" -f "$cfg" -db
  wait_for "haproxy" 10 port_busy "$FRONT"
}

dp_addr() { echo "$DP_NET.$1:$((DP_PORT_BASE + $1))"; }
dp_ops() { echo "$DP_NET.$1:$DP_OPS_PORT"; }

# running_dps: the indexes of the running data planes, ascending.
running_dps() {
  local f n
  for f in "$PIDS"/dp-*.pid; do
    [[ -e "$f" ]] || continue
    n="${f##*/dp-}"
    n="${n%.pid}"
    running "dp-$n" && echo "$n"
  done | sort -n
}

start_dataplane() {
  local n="$1"
  running "dp-$n" && return
  need_port "$(dp_addr "$n")" "dp-$n"
  need_port "$(dp_ops "$n")" "dp-$n ops"
  log "starting data plane dp-$n on $(dp_addr "$n")"
  # A snapshot left from an earlier twin would be ahead of a fresh store;
  # the control plane is up, so there is nothing to boot from disk for.
  rm -rf "$DATA/dp-$n"
  spawn "dp-$n" "PORTICO_DATAPLANE_TOKEN=$DP_TOKEN" -- "$BIN/dataplane" \
    --controlplane consul://portico-controlplane --consul "$CONSUL_HTTP" \
    --redis "redis://127.0.0.1:$REDIS_PORT/0" --drain-delay 2s --trusted-proxies 127.0.0.1/32 \
    --listen "$(dp_addr "$n")" --ops-listen "$(dp_ops "$n")" \
    --state-dir "$DATA/dp-$n" --node-id "dp-$n" --poll-wait 30s --log-level info
}

# lb_up: the addresses HAProxy has UP in the dataplanes backend.
lb_up() {
  curl -fsS --max-time 2 "http://$STATS/;csv;norefresh" | awk -F, '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $1 == "dataplanes" && $2 != "BACKEND" && $col["status"] ~ /^UP/ { print $col["addr"] }'
}

# Captured first: with pipefail, grep -q leaving early could fail the pipe.
in_lb() {
  local up
  up="$(lb_up)" && grep -qxF "$1" <<<"$up"
}
not_in_lb() {
  local up
  up="$(lb_up)" || return 0
  ! grep -qxF "$1" <<<"$up"
}

scale_to() {
  local want="$1" n
  if ! [[ "$want" =~ ^[0-9]+$ ]] || ((want > MAX_DP)); then
    die "data planes: want 0 to $MAX_DP, got '$want'"
  fi
  echo "$want" >"$WANT_DPS"
  local gone=() gone_addrs=()
  for n in $(running_dps); do
    if ((n > want)); then
      gone+=("dp-$n")
      gone_addrs+=("$(dp_addr "$n")")
    fi
  done
  if ((${#gone[@]})); then
    log "stopping ${gone[*]} (SIGTERM: not ready for 2s, then in-flight requests finish)"
    STOP_TIMEOUT=40 stop "${gone[@]}"
  fi
  for ((n = 1; n <= want; n++)); do start_dataplane "$n"; done
  for ((n = 1; n <= want; n++)); do
    wait_for "dp-$n" 30 http_ok "http://$(dp_ops "$n")/readyz"
  done
  # Consul checks a new data plane within 5s; HAProxy asks Consul every second.
  for ((n = 1; n <= want; n++)); do wait_for "dp-$n behind HAProxy" 30 in_lb "$(dp_addr "$n")"; done
  local a
  for a in "${gone_addrs[@]+"${gone_addrs[@]}"}"; do wait_for "$a leaving HAProxy" 15 not_in_lb "$a"; done
}

# --- example configuration -------------------------------------------------

admin() { # METHOD PATH [JSON]
  curl -fsS -o /dev/null -X "$1" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'Content-Type: application/json' ${3:+--data "$3"} "http://${CP_ADDRS[0]}$2"
}

seed() {
  # PUT creates or replaces, and an unchanged object is a no-op: re-running
  # leaves the revision where it is.
  admin PUT /v1/services/users '{"consul":{"service":"users","tags":["demo"]}}'
  admin PUT /v1/services/orders '{"consul":{"service":"orders","tags":["demo"]}}'
  admin PUT /v1/routes/users '{"paths":["/users/*"],"service":"users","strip_prefix":true}'
  # Counted in Redis per client address (X-Forwarded-For from HAProxy,
  # trusted through --trusted-proxies): one limit however many data planes.
  # The burst lets a quick loop of curls see ten pass before the 429s.
  admin PUT /v1/routes/orders '{"paths":["/orders/*"],"service":"orders","strip_prefix":true,"rate_limit":{"limit":10,"window":"1s","burst":9,"key":"ip"}}'
}

# store_reset: the control plane reports its store emptied or rolled back.
store_reset() {
  curl -fsS --max-time 2 -H "Authorization: Bearer $ADMIN_TOKEN" "http://${CP_ADDRS[0]}/v1/store" |
    grep -q '"writable":false'
}

# adopt_store: after Consul came back empty, re-seed the store with the
# configuration the control planes last served (what the data planes run),
# an explicit operator action (docs/OPERATIONS.md, "Store reset").
adopt_store() {
  # The control plane notices within a few seconds (it probes its store).
  wait_for "cp-1 noticing the emptied store" 15 store_reset
  log "re-seeding the emptied store with the configuration cp-1 last served (POST /v1/store/adopt?config=last-seen)"
  admin POST '/v1/store/adopt?config=last-seen'
}

gateway_serves() { curl -fsS -o /dev/null --max-time 2 "http://$FRONT/users/ready"; }

# --- commands --------------------------------------------------------------

others_running() {
  local f
  for f in "$PIDS"/*.pid; do
    [[ -e "$f" ]] || continue
    f="${f##*/}"
    running "${f%.pid}" && return 0
  done
  return 1
}

cmd_up() {
  local want="${1:-}"
  [[ -x "$BIN/controlplane" && -x "$BIN/dataplane" && -x "$BIN/demo-upstream" ]] ||
    die "binaries missing in $BIN: run make build (make cluster does)"
  mkdir -p "$PIDS" "$LOGS" "$DATA"
  local consul_reset=""
  if ! running consul && others_running; then
    # Consul runs in memory: the new agent starts empty. Every process
    # registers again by itself; the control planes find their store
    # emptied and refuse writes until it is adopted, below.
    log "consul is not running but other twin processes are: starting it again, empty"
    consul_reset=1
  fi
  if [[ -z "$want" ]]; then
    want="$(cat "$WANT_DPS" 2>/dev/null || true)"
    [[ "$want" =~ ^[0-9]+$ ]] || want=2
  fi
  load_tokens
  start_consul
  start_redis
  start_controlplanes
  start_upstreams
  [[ -z "$consul_reset" ]] || adopt_store
  seed
  start_haproxy
  scale_to "$want"
  wait_for "the gateway routing /users/*" 30 gateway_serves
  summary
}

cmd_scale() {
  [[ $# -eq 1 ]] || die "usage: scripts/cluster.sh scale N"
  if ! running consul || ! running cp-1 || ! running haproxy; then
    die "the twin is not running: scripts/cluster.sh up"
  fi
  load_tokens
  scale_to "$1"
  summary
}

cmd_down() {
  if ! compgen -G "$PIDS/*.pid" >/dev/null; then
    log "nothing to stop"
    rm -rf "$DATA"
    return
  fi
  local dps=() f
  for f in "$PIDS"/dp-*.pid; do
    [[ -e "$f" ]] || continue
    f="${f##*/}"
    dps+=("${f%.pid}")
  done
  # Data planes first, while the gateway and Consul still run, so that they
  # drain and deregister like in production; then the rest, front to back.
  ((${#dps[@]})) && log "stopping data planes" && STOP_TIMEOUT=40 stop "${dps[@]}"
  log "stopping haproxy, demo services, control planes, redis, consul"
  stop haproxy
  stop users orders
  stop cp-1 cp-2
  stop redis
  stop consul
  rm -f "$PIDS"/*.pid "$DIR/haproxy.sock"
  # In-memory Consul: the snapshots and Redis files describe a twin that no
  # longer exists. Logs and tokens stay.
  rm -rf "$DATA"
  log "stopped; logs are in $LOGS"
}

cmd_status() {
  local name any=0
  for name in consul redis cp-1 cp-2 users orders haproxy $(running_dps | sed 's/^/dp-/'); do
    if running "$name"; then
      printf '  %-8s running (pid %s)\n' "$name" "$(pid_of "$name")"
      any=1
    fi
  done
  ((any)) || echo "  nothing runs"
  if running haproxy; then
    echo "  data planes behind HAProxy: $(lb_up | tr '\n' ' ')"
  fi
}

summary() {
  local n rel="${DIR#"$ROOT"/}" tok
  tok=". $rel/tokens   # sets \$PORTICO_ADMIN_TOKEN"
  [[ -n "${PORTICO_ADMIN_TOKEN:-}" ]] && tok="# \$PORTICO_ADMIN_TOKEN: from your environment"
  cat <<MSG

The Portico twin is running.

  gateway (HAProxy)   http://$FRONT
  HAProxy stats       http://$STATS/
  admin API           http://${CP_ADDRS[0]}  http://${CP_ADDRS[1]}   (two control planes, one store)
  Consul UI           http://$CONSUL_HTTP/ui/
  Redis               redis://127.0.0.1:$REDIS_PORT/0
MSG
  for n in $(running_dps); do
    printf '  %-19s http://%s   ops http://%s/status\n' "data plane dp-$n" "$(dp_addr "$n")" "$(dp_ops "$n")"
  done
  cat <<MSG
  logs                $rel/logs/

Try:
  $tok
  curl -s http://$FRONT/users/42
  for i in \$(seq 15); do curl -s -o /dev/null -w '%{http_code} ' http://$FRONT/orders/1; done; echo
                      # 10 a second per client, counted in Redis across every data plane
  for cp in ${CP_ADDRS[*]}; do curl -s -H "Authorization: Bearer \$PORTICO_ADMIN_TOKEN" http://\$cp/v1/dataplanes; echo; done
                      # each control plane lists the data planes polling it
  curl -s -X PUT -H "Authorization: Bearer \$PORTICO_ADMIN_TOKEN" -H 'Content-Type: application/json' \\
       http://${CP_ADDRS[1]}/v1/routes/hello -d '{"paths":["/hello"],"service":"users"}'
  curl -s http://$FRONT/hello      # written through the other control plane
  scripts/cluster.sh scale 4       # HAProxy picks new data planes up from Consul
  scripts/cluster.sh status
  make cluster-down
MSG
}

case "${1:-}" in
up) cmd_up "${2:-}" ;;
scale) cmd_scale "${@:2}" ;;
down) cmd_down ;;
status) cmd_status ;;
*)
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
