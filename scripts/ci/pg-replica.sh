#!/usr/bin/env bash
# A throwaway Postgres primary with one asynchronous streaming replica, for
# the replica-read tests (gormstore Options.Replica). It never touches the
# shared server on 5432: it creates two clusters of its own with Debian's
# postgresql-common tools.
#
#   scripts/ci/pg-replica.sh start    # create, start; prints export lines for the tests
#   scripts/ci/pg-replica.sh stop     # stop and drop both clusters
#   scripts/ci/pg-replica.sh status
#
# Use it as: env=$(bash scripts/ci/pg-replica.sh start) && eval "$env"
# Progress goes to stderr; only the export lines go to stdout. Ports come
# from PG_REPLICA_PRIMARY_PORT (5433) and PG_REPLICA_STANDBY_PORT (5434).
# Must run as root (the clusters run as the postgres user).
set -euo pipefail

primary=ginoauth_primary
standby=ginoauth_replica
pport=${PG_REPLICA_PRIMARY_PORT:-5433}
sport=${PG_REPLICA_STANDBY_PORT:-5434}
version=${PG_REPLICA_VERSION:-$(ls /etc/postgresql | sort -V | tail -1)}

log() { printf 'pg-replica: %s\n' "$*" >&2; }

exists() { pg_lsclusters -h | awk -v v="$version" -v c="$1" '$1 == v && $2 == c { found = 1 } END { exit !found }'; }

stop() {
  for c in "$standby" "$primary"; do
    if exists "$c"; then
      log "dropping cluster $version/$c"
      pg_dropcluster --stop "$version" "$c" >&2
    fi
    # pg_dropcluster leaves the config directory when it holds files it did
    # not create (our conf.d file), and pg_createcluster then refuses the
    # name; both directories are this script's own.
    rm -rf "/etc/postgresql/$version/$c" "/var/lib/postgresql/$version/$c"
  done
}

configure() { # cluster: settings for both; throwaway data, so no fsync
  local conf=/etc/postgresql/$version/$1/conf.d/ginoauth-replica.conf
  cat >"$conf" <<CONF
listen_addresses = '127.0.0.1'
ssl = off
fsync = off
shared_buffers = 64MB
wal_level = replica
max_wal_senders = 4
hot_standby = on
CONF
  # Trust on loopback and the socket, for the tests and for replication.
  cat >"/etc/postgresql/$version/$1/pg_hba.conf" <<HBA
local   all          all                 trust
host    all          all    127.0.0.1/32 trust
local   replication  all                 trust
host    replication  all    127.0.0.1/32 trust
HBA
}

wait_ready() { # port
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$1" && return 0
    sleep 0.5
  done
  log "server on port $1 did not come up"; return 1
}

port_free() {
  if ss -ltn "sport = :$1" | grep -q LISTEN; then
    log "port $1 is taken; set PG_REPLICA_PRIMARY_PORT / PG_REPLICA_STANDBY_PORT"; return 1
  fi
}

start() {
  started=$SECONDS
  stop # leftovers of an earlier run that was killed
  port_free "$pport"
  port_free "$sport"

  log "creating primary $version/$primary on port $pport"
  pg_createcluster "$version" "$primary" --port "$pport" >/dev/null
  configure "$primary"
  pg_ctlcluster --skip-systemctl-redirect "$version" "$primary" start
  wait_ready "$pport"
  psql -q -h 127.0.0.1 -p "$pport" -U postgres -c 'CREATE DATABASE test' >&2

  log "creating replica $version/$standby on port $sport from pg_basebackup"
  pg_createcluster "$version" "$standby" --port "$sport" >/dev/null
  configure "$standby"
  local data=/var/lib/postgresql/$version/$standby
  find "$data" -mindepth 1 -delete
  # -R writes standby.signal and primary_conninfo: a streaming replica.
  runuser -u postgres -- pg_basebackup -h 127.0.0.1 -p "$pport" -U postgres -D "$data" -R -X stream -c fast
  pg_ctlcluster --skip-systemctl-redirect "$version" "$standby" start
  wait_ready "$sport"

  for _ in $(seq 1 60); do
    state=$(psql -Atq -h 127.0.0.1 -p "$pport" -U postgres -c "SELECT state FROM pg_stat_replication LIMIT 1")
    [ "$state" = streaming ] && break
    sleep 0.5
  done
  if [ "$state" != streaming ]; then log "replica is not streaming (state '$state')"; return 1; fi
  [ "$(psql -Atq -h 127.0.0.1 -p "$sport" -U postgres -c 'SELECT pg_is_in_recovery()')" = t ]
  log "primary on $pport, replica on $sport streaming; took $((SECONDS - started)) s"
  echo "export GINOAUTH_TEST_REPLICA_PRIMARY_DSN='postgres://postgres@127.0.0.1:$pport/test?sslmode=disable'"
  echo "export GINOAUTH_TEST_REPLICA_DSN='postgres://postgres@127.0.0.1:$sport/test?sslmode=disable'"
}

status() {
  pg_lsclusters | awk -v p="$primary" -v s="$standby" 'NR == 1 || $2 == p || $2 == s'
  exists "$primary" && psql -h 127.0.0.1 -p "$pport" -U postgres -c \
    'SELECT application_name, state, sent_lsn, replay_lsn FROM pg_stat_replication' || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
