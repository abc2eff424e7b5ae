#!/usr/bin/env bash
# Starts the reference Bluesky PDS (OAuth authorization server included) and
# an in-memory PLC directory on 127.0.0.1, creates test accounts, and writes
# an env file for the Go side (internal/refpds reads it):
#
#   ${GINOAUTH_REFPDS_CACHE:-$HOME/.cache/ginoauth-refpds}/run/env
#
# Run scripts/refpds/install.sh first. Stop with scripts/refpds/stop.sh.
#
# Settings (environment):
#   GINOAUTH_REFPDS_CACHE          install + run directory (outside the repo)
#   GINOAUTH_REFPDS_PORT           PDS port on 127.0.0.1 (default: a free one)
#   GINOAUTH_REFPDS_PLC_PORT       PLC port on 127.0.0.1 (default: a free one)
#   GINOAUTH_REFPDS_HOSTNAME       public hostname (default pds.test); the
#                                  issuer is https://<hostname>
#   GINOAUTH_REFPDS_ACCOUNTS       account names, comma or space separated
#                                  (default "alice,bob"); handle <name>.test,
#                                  password <name>-refpds-password,
#                                  email <name>@example.com
#   GINOAUTH_REFPDS_START_TIMEOUT  seconds to wait for the server (default 90)
#   GINOAUTH_REFPDS_LOG_LEVEL      PDS log level (default warn). "info" logs
#                                  every request, cookies included.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

t0=$(refpds_now_ms)
refpds_check_cache_outside_repo

hostname="${GINOAUTH_REFPDS_HOSTNAME:-pds.test}"
pds_port="${GINOAUTH_REFPDS_PORT:-0}"
plc_port="${GINOAUTH_REFPDS_PLC_PORT:-0}"
accounts="${GINOAUTH_REFPDS_ACCOUNTS:-alice,bob}"
timeout="${GINOAUTH_REFPDS_START_TIMEOUT:-90}"
log_level="${GINOAUTH_REFPDS_LOG_LEVEL:-warn}"

[[ "$hostname" =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$ && "$hostname" == *.* ]] ||
	refpds_die "GINOAUTH_REFPDS_HOSTNAME=$hostname is not a hostname with a dot (e.g. pds.test)"
for p in "$pds_port" "$plc_port"; do
	if ! [[ "$p" =~ ^[0-9]+$ ]] || ((p > 65535)); then
		refpds_die "port '$p' is not a number from 0 to 65535"
	fi
done
[[ "$timeout" =~ ^[0-9]+$ ]] || refpds_die "GINOAUTH_REFPDS_START_TIMEOUT=$timeout is not a number of seconds"
read -r -a account_list <<<"${accounts//,/ }"
((${#account_list[@]} > 0)) || refpds_die "GINOAUTH_REFPDS_ACCOUNTS is empty"
for name in "${account_list[@]}"; do
	[[ "$name" =~ ^[a-z][a-z0-9]{2,17}$ ]] ||
		refpds_die "account name '$name' must be 3-18 lowercase letters/digits, starting with a letter"
done

refpds_installed ||
	refpds_die "the reference PDS is not installed (or the lock file changed) in $REFPDS_PKG; run: bash scripts/refpds/install.sh"

mkdir -p "$REFPDS_RUN"
if [[ -f "$REFPDS_RUN/server.pid" ]] && refpds_is_our_server "$(cat "$REFPDS_RUN/server.pid")"; then
	if [[ -f "$REFPDS_RUN/env" ]]; then
		refpds_log "already running (pid $(cat "$REFPDS_RUN/server.pid")); env file: $REFPDS_RUN/env"
		refpds_log "to restart: bash scripts/refpds/stop.sh && bash scripts/refpds/start.sh"
		exit 0
	fi
	refpds_log "a half-started server is running; stopping it first"
fi
# Leftovers of an earlier run (crashed server, stale env file, data dir).
refpds_stop >/dev/null

log="$REFPDS_RUN/server.log"
if [[ -f "$log" ]]; then mv -f "$log" "$log.prev"; fi

data="$(mktemp -d "${TMPDIR:-/tmp}/ginoauth-refpds.XXXXXXXX")"
echo "$data" >"$REFPDS_RUN/datadir"

# The server script imports packages from the install, so it runs from there.
cp "$REFPDS_SCRIPT_DIR/server.mjs" "$REFPDS_PKG/refpds-server.mjs"

(
	cd "$REFPDS_PKG"
	exec env \
		REFPDS_HOSTNAME="$hostname" REFPDS_PORT="$pds_port" REFPDS_PLC_PORT="$plc_port" \
		REFPDS_DATA_DIR="$data" REFPDS_READY_FILE="$REFPDS_RUN/ready" \
		LOG_ENABLED=true LOG_LEVEL="$log_level" NODE_ENV=development \
		"$REFPDS_NODE" "$REFPDS_PKG/refpds-server.mjs" serve </dev/null >"$log" 2>&1
) &
launcher=$!

fail_start() {
	echo "---- last lines of $log ----" >&2
	tail -n 30 "$log" >&2 || true
	if kill -0 "$launcher" 2>/dev/null; then kill -TERM "$launcher" 2>/dev/null || true; fi
	if [[ -f "$REFPDS_RUN/ready" ]]; then
		sed -n 's/^pid=//p' "$REFPDS_RUN/ready" >"$REFPDS_RUN/server.pid"
	fi
	refpds_stop >/dev/null || true
	refpds_die "$1 (log: $log)"
}

deadline=$(($(date +%s) + timeout))
until [[ -f "$REFPDS_RUN/ready" ]]; do
	kill -0 "$launcher" 2>/dev/null || fail_start "the server exited while starting"
	(($(date +%s) < deadline)) || fail_start "the server did not listen within ${timeout}s"
	sleep 0.2
done
pid="$(sed -n 's/^pid=//p' "$REFPDS_RUN/ready")"
pds_bound="$(sed -n 's/^pds_port=//p' "$REFPDS_RUN/ready")"
plc_bound="$(sed -n 's/^plc_port=//p' "$REFPDS_RUN/ready")"
echo "$pid" >"$REFPDS_RUN/server.pid"
pds_url="http://127.0.0.1:$pds_bound"

node_cmd() { (cd "$REFPDS_PKG" && "$REFPDS_NODE" refpds-server.mjs "$@"); }

until node_cmd health "$pds_url" >/dev/null 2>&1; do
	refpds_is_our_server "$pid" || fail_start "the server exited while starting"
	(($(date +%s) < deadline)) || fail_start "$pds_url/xrpc/_health did not answer within ${timeout}s"
	sleep 0.2
done
refpds_log "PDS up at $pds_url as https://$hostname, PLC at http://localhost:$plc_bound (pid $pid, $(refpds_elapsed "$t0"))"

env_lines=(
	"# Written by scripts/refpds/start.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ); removed by stop.sh."
	"# Test accounts on a throwaway server: these passwords are fixtures, not secrets."
	"GINOAUTH_REFPDS_PDS_URL=$pds_url"
	"GINOAUTH_REFPDS_HOSTNAME=$hostname"
	"GINOAUTH_REFPDS_ISSUER=https://$hostname"
	"GINOAUTH_REFPDS_PLC_URL=http://localhost:$plc_bound"
	"GINOAUTH_REFPDS_PID=$pid"
	"GINOAUTH_REFPDS_ACCOUNTS=$(
		IFS=,
		echo "${account_list[*]}"
	)"
)
for name in "${account_list[@]}"; do
	handle="$name.test"
	password="$name-refpds-password"
	email="$name@example.com"
	did="$(node_cmd create-account "$pds_url" "$handle" "$email" "$password" 2>&1)" ||
		fail_start "creating account $handle failed: $did"
	upper="$(echo "$name" | tr '[:lower:]' '[:upper:]')"
	env_lines+=(
		"GINOAUTH_REFPDS_${upper}_HANDLE=$handle"
		"GINOAUTH_REFPDS_${upper}_DID=$did"
		"GINOAUTH_REFPDS_${upper}_PASSWORD=$password"
		"GINOAUTH_REFPDS_${upper}_EMAIL=$email"
	)
	refpds_log "account $handle = $did"
done

(
	umask 077
	printf '%s\n' "${env_lines[@]}" >"$REFPDS_RUN/env.tmp"
)
mv -f "$REFPDS_RUN/env.tmp" "$REFPDS_RUN/env"
refpds_log "ready in $(refpds_elapsed "$t0"); env file: $REFPDS_RUN/env"
