#!/usr/bin/env bash
# Installs Debian's Chromium for the console's browser tests (Playwright drives it: tests/e2e/console) unless
# /usr/bin/chromium is already there. Idempotent: a no-op in milliseconds once installed. Never
# `playwright install`: that downloads a browser build of its own; the tests launch Debian's (TQ_CHROMIUM).
set -euo pipefail

CHROMIUM=${TQ_CHROMIUM:-/usr/bin/chromium}
[[ -x $CHROMIUM ]] && exit 0

SUDO=()
[[ $(id -u) -eq 0 ]] || SUDO=(sudo)

install() {
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
}
echo "install-chromium: installing chromium from Debian" >&2
if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
  "${SUDO[@]}" apt-get update -q
fi
if ! install; then
  echo "install-chromium: install failed; refreshing the package lists and trying again" >&2
  "${SUDO[@]}" apt-get update -q
  install
fi

if [[ ! -x $CHROMIUM ]]; then
  echo "install-chromium: still no $CHROMIUM after installing chromium" >&2
  exit 1
fi
