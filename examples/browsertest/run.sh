#!/usr/bin/env bash
# Browser test of the example apps in headless Chromium: examples/basic
# (log in as alice.test on the built-in authorization server, approve on the
# consent page, call the PDS, save a note, the devices list from a second
# browser, log out, log out everywhere; the layout at 1280 and 500 px; the
# account switcher: add bob.test, switch, sign out of one, log out of all, at
# 1280 and 390 px) and
# examples/minimal (the README's Quick start, on 127.0.0.1:8080). Screenshots
# go to SCREENSHOT_DIR, by default examples/browsertest/artifacts/ (ignored by
# git; nothing tracked is written).
#
#   bash examples/browsertest/run.sh
#
# Installs Debian's chromium when it is missing (as root, with apt-get), then
# runs the Go test of this nested module (chromedp; not a dependency of the
# library). Exits non-zero when the test fails. Skips, with a message and
# exit 0, only when Chromium is missing and cannot be installed.
set -euo pipefail
cd "$(dirname "$0")"

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "browsertest: $chromium not found; installing Debian's chromium"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core fonts-liberation; } \
      >/tmp/browsertest-apt.log 2>&1 || { echo "browsertest: apt-get failed:"; tail -20 /tmp/browsertest-apt.log; }
  else
    echo "browsertest: not root or no apt-get: cannot install chromium"
  fi
fi
if [ ! -x "$chromium" ]; then
  echo "SKIP: browsertest: Chromium is not installed and could not be installed; the browser test did not run"
  exit 0
fi
export CHROMIUM="$chromium"
"$chromium" --version || true

go mod download
start=$SECONDS
go test -count=1 -v -timeout 10m ./...
echo "browsertest: screenshots in ${SCREENSHOT_DIR:-$PWD/artifacts}"
echo "browsertest: done in $((SECONDS - start)) s"
