#!/usr/bin/env bash
# A throwaway Redis Cluster on loopback for the tests: three primaries and
# three replicas of Debian's redis-server, cluster-node-timeout 3000 ms, no
# persistence, everything under one directory of its own.
#
#   bash scripts/ci/redis-cluster.sh start    # idempotent; prints the env line
#   bash scripts/ci/redis-cluster.sh addrs    # 127.0.0.1:7101,...,127.0.0.1:7106
#   bash scripts/ci/redis-cluster.sh status
#   bash scripts/ci/redis-cluster.sh stop     # stops only the nodes it started
#
# Then: export GINOAUTH_TEST_REDIS_CLUSTER=$(bash scripts/ci/redis-cluster.sh addrs)
#
# REDIS_CLUSTER_PORT (default 7101) is the first of the six client ports;
# each node's cluster bus is its port + 10000. REDIS_CLUSTER_DIR (default
# ${TMPDIR:-/tmp}/ginoauth-redis-cluster-<port>) holds the nodes' config,
# pid and log files.
set -euo pipefail

base=${REDIS_CLUSTER_PORT:-7101}
dir=${REDIS_CLUSTER_DIR:-${TMPDIR:-/tmp}/ginoauth-redis-cluster-$base}
ports=()
for i in 0 1 2 3 4 5; do ports+=($((base + i))); done

addrs() {
  local IFS=,
  local out=()
  for p in "${ports[@]}"; do out+=("127.0.0.1:$p"); done
  echo "${out[*]}"
}

cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }

# pidof_node prints the pid of our node on port $1 if it is running: the pid
# from our own pid file, and only if that process is a redis-server on that
# port (a stale pid file must never make us signal somebody else's process).
pidof_node() {
  local pidfile="$dir/$1/redis.pid" pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "redis-server.*:$1" || return 1
  echo "$pid"
}

cluster_ok() {
  for p in "${ports[@]}"; do
    cli "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  done
  # Every node must also see six nodes, three of them primaries with slots.
  [ "$(cli "${ports[0]}" cluster info | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')" = 6 ] || return 1
  [ "$(cli "${ports[0]}" cluster info | tr -d '\r' | sed -n 's/^cluster_size://p')" = 3 ] || return 1
}

start() {
  if cluster_ok 2>/dev/null; then
    echo "Redis Cluster already up on $(addrs)"
    return
  fi
  for p in "${ports[@]}"; do
    if pidof_node "$p" >/dev/null; then continue; fi
    if cli "$p" ping >/dev/null 2>&1; then
      echo "port $p is taken by a Redis server this script did not start; set REDIS_CLUSTER_PORT" >&2
      exit 1
    fi
  done
  # A half-built cluster from an earlier run is started afresh.
  stop quiet
  mkdir -p "$dir"
  for p in "${ports[@]}"; do
    # Afresh: a node that was a replica keeps the dump.rdb of its sync,
    # and would load it (and claim its keys' slots) at the next start.
    rm -rf "${dir:?}/${p:?}"
    mkdir -p "$dir/$p"
    redis-server --port "$p" --bind 127.0.0.1 --daemonize yes \
      --dir "$dir/$p" --pidfile "$dir/$p/redis.pid" --logfile "$dir/$p/redis.log" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 3000 \
      --save "" --appendonly no --repl-diskless-sync-delay 0 --enable-debug-command local
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 1 50); do cli "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
    cli "$p" ping >/dev/null
  done
  local hosts=()
  for p in "${ports[@]}"; do hosts+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${hosts[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log"
  for _ in $(seq 1 100); do cluster_ok && break; sleep 0.2; done
  if ! cluster_ok; then
    echo "Redis Cluster did not reach cluster_state:ok; see $dir" >&2
    exit 1
  fi
  # Replicas must have finished their first sync before tests rely on them.
  for _ in $(seq 1 100); do
    synced=0
    for p in "${ports[@]}"; do
      if cli "$p" info replication | tr -d '\r' | grep -qE '^(role:master|master_link_status:up)$'; then
        synced=$((synced + 1))
      fi
    done
    [ "$synced" = 6 ] && break
    sleep 0.2
  done
  echo "Redis Cluster up on $(addrs)"
}

stop() {
  for p in "${ports[@]}"; do
    local pid
    pid=$(pidof_node "$p") || continue
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    if [ -d "/proc/$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
  done
  [ "${1:-}" = quiet ] || echo "Redis Cluster on $(addrs) stopped"
}

status() {
  for p in "${ports[@]}"; do
    if pid=$(pidof_node "$p"); then
      role=$(cli "$p" role 2>/dev/null | head -1 || echo "?")
      echo "127.0.0.1:$p pid $pid $role"
    else
      echo "127.0.0.1:$p down"
    fi
  done
  if cluster_ok 2>/dev/null; then echo "cluster_state:ok"; else echo "cluster not ok"; return 1; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  addrs) addrs ;;
  *) echo "usage: $0 start|stop|status|addrs" >&2; exit 2 ;;
esac
