#!/usr/bin/env bash
# Installs Debian's Chromium for the console's browser tests (Playwright drives it: tests/e2e/console) unless
# /usr/bin/chromium is already there. Idempotent: a no-op in milliseconds once installed. Never
# `playwright install`: that downloads a browser build of its own; the tests launch Debian's (TQ_CHROMIUM).
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM=${TQ_CHROMIUM:-/usr/bin/chromium}
[[ -x $CHROMIUM ]] && exit 0

scripts/apt-install.sh install-chromium chromium
if [[ ! -x $CHROMIUM ]]; then
  echo "install-chromium: still no $CHROMIUM after installing chromium" >&2
  exit 1
fi
