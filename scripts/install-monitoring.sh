#!/usr/bin/env bash
# Installs Debian's Prometheus and Alertmanager (promtool, amtool, prometheus, prometheus-alertmanager) unless they
# are already on PATH. Idempotent: a no-op in milliseconds once installed. Starts no daemon: the packages' postinst
# would start their services, so a policy-rc.d refusing every start (exit 101) is in place during the install.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=(prometheus promtool prometheus-alertmanager amtool)
PACKAGES=(prometheus prometheus-alertmanager)

missing() {
  local tool
  for tool in "${TOOLS[@]}"; do
    command -v "$tool" >/dev/null || return 0
  done
  return 1
}

missing || exit 0

SUDO=()
[[ $(id -u) -eq 0 ]] || SUDO=(sudo)
POLICY=/usr/sbin/policy-rc.d
PLACED_POLICY=false

restore_policy() {
  if $PLACED_POLICY; then "${SUDO[@]}" rm -f "$POLICY"; fi
}
trap restore_policy EXIT

if [[ ! -e $POLICY ]]; then
  printf '#!/bin/sh\n# placed by tq scripts/install-monitoring.sh: start no service during the install\nexit 101\n' |
    "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  PLACED_POLICY=true
fi

scripts/apt-install.sh install-monitoring "${PACKAGES[@]}"

if missing; then
  echo "install-monitoring: still missing one of: ${TOOLS[*]}" >&2
  exit 1
fi
