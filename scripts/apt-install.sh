#!/usr/bin/env bash
# Installs Debian packages without recommends, as root or through sudo: refreshes the package lists first if there
# are none, and once more if the install fails (stale lists name versions the mirror no longer has).
#   scripts/apt-install.sh CALLER PACKAGE...   (CALLER names the messages: install-chromium, install-monitoring)
set -euo pipefail

SUDO=()
[[ $(id -u) -eq 0 ]] || SUDO=(sudo)
TAG=$1
shift

install() {
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}
echo "$TAG: installing $* from Debian" >&2
if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
  "${SUDO[@]}" apt-get update -q
fi
if ! install "$@"; then
  echo "$TAG: install failed; refreshing the package lists and trying again" >&2
  "${SUDO[@]}" apt-get update -q
  install "$@"
fi
