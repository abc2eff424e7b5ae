#!/usr/bin/env bash
# Stops the reference PDS + PLC started by start.sh (by process id), and
# deletes its temporary data directory and env file. Safe to run when nothing
# runs. Logs stay in ${GINOAUTH_REFPDS_CACHE:-$HOME/.cache/ginoauth-refpds}/run.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

refpds_stop
