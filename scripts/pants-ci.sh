#!/usr/bin/env bash
# CI's Pants step: lint (ruff), check (mypy), unit tests and one pex per service, then start each pex.
#   scripts/pants-ci.sh            (after `make install`: the pex test uses .venv's pytest and .venv-emu's emulator)
# Installs Pants first if needed (scripts/install-pants.sh). Fails if any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

PEXES=(dist/tq-gateway.pex dist/tq-scheduler.pex dist/tq-executor.pex dist/tq-reaper.pex)

# The workarounds in ../shared/TOOLING-FACTS.md: a TLS-intercepting proxy's CA bundle for Pants' own downloads,
# and no machine-wide pip configuration (its global constraints file crashes pex's resolver).
if [[ -z "${PANTS_CA_CERTS_PATH:-}" && -f /etc/ssl/certs/ca-certificates.crt ]]; then
  export PANTS_CA_CERTS_PATH=/etc/ssl/certs/ca-certificates.crt
fi
export PIP_CONFIG_FILE=/dev/null

scripts/install-pants.sh
PANTS=${TQ_PANTS_VENV:-.pants-venv}/bin/pants

rm -f "${PEXES[@]}" # so a pex that stopped being built is missed, not found stale
"$PANTS" --no-pantsd lint check test package ::

missing=()
for pex in "${PEXES[@]}"; do
  [[ -f "$pex" ]] || missing+=("$pex")
done
if ((${#missing[@]})); then
  echo "pants-ci.sh: pants package left no ${missing[*]}" >&2
  exit 1
fi
ls -l "${PEXES[@]}"

# Start each pex against an emulator (tests/pex: marker `pex`, outside `make test`'s selections).
.venv/bin/pytest -m pex tests/pex
