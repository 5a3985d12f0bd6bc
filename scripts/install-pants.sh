#!/usr/bin/env bash
# Install Pants 2.17.1 into its own virtual environment (.pants-venv, Python 3.9) and build the pex tool Pants
# runs from PyPI into 3rdparty/tools/ (Pants would download it from GitHub). Idempotent: a second run only checks.
# Needs Python 3.9 (pyenv's 3.9.x, or TQ_PANTS_PYTHON=/path/to/python3.9) and PyPI. Both outputs are git-ignored.
set -euo pipefail
cd "$(dirname "$0")/.."

PANTS_VERSION=2.17.1
PEX_VERSION=2.1.137
# pants.toml's [pex-cli] known_versions names the same digest and size.
PEX_SHA256=9f144d7c41d60d01924e5db26aa206a5e0f68bc5c3bd552d1f1fcb77001b9015
VENV=${TQ_PANTS_VENV:-.pants-venv}
PEX_TOOL=3rdparty/tools/pex-v$PEX_VERSION

fail() {
  echo "install-pants.sh: $*" >&2
  exit 1
}

# The machine's pip configuration may add a global constraints file that breaks these installs.
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1
if [[ -z "${PIP_CERT:-}" && -f /etc/ssl/certs/ca-certificates.crt ]]; then
  export PIP_CERT=/etc/ssl/certs/ca-certificates.crt
fi

find_python39() {
  if [[ -n "${TQ_PANTS_PYTHON:-}" ]]; then
    echo "$TQ_PANTS_PYTHON"
    return
  fi
  local root candidate found=""
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for candidate in "$root"/versions/3.9.*/bin/python3.9; do
    [[ -x "$candidate" ]] && found=$candidate # the last 3.9 the glob lists
  done
  echo "${found:-$(command -v python3.9 || true)}"
}

installed=$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('pantsbuild.pants'))" 2>/dev/null || true)
if [[ "$installed" != "$PANTS_VERSION" ]] || [[ ! -x "$VENV/bin/pex" ]]; then
  python39=$(find_python39)
  [[ -n "$python39" ]] || fail "no Python 3.9 found (pyenv install 3.9, or set TQ_PANTS_PYTHON)"
  echo "install-pants.sh: installing pantsbuild.pants==$PANTS_VERSION into $VENV with $python39"
  rm -rf "$VENV"
  "$python39" -m venv "$VENV" >/dev/null || fail "could not create $VENV with $python39"
  "$VENV/bin/pip" install -q "pantsbuild.pants==$PANTS_VERSION" "pex==$PEX_VERSION" \
    || fail "pip could not install pantsbuild.pants==$PANTS_VERSION and pex==$PEX_VERSION into $VENV"
  "$VENV/bin/pants" --version >/dev/null 2>&1 || fail "$VENV/bin/pants does not run"
fi

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ ! -f "$PEX_TOOL" ]] || [[ "$(sha256_of "$PEX_TOOL")" != "$PEX_SHA256" ]]; then
  echo "install-pants.sh: building $PEX_TOOL from PyPI"
  mkdir -p "$(dirname "$PEX_TOOL")"
  rm -f "$PEX_TOOL"
  "$VENV/bin/pex" "pex==$PEX_VERSION" -c pex --python-shebang '/usr/bin/env python3' --no-strip-pex-env \
    -o "$PEX_TOOL.tmp" >/dev/null || fail "could not build $PEX_TOOL with $VENV/bin/pex"
  actual=$(sha256_of "$PEX_TOOL.tmp")
  if [[ "$actual" != "$PEX_SHA256" ]]; then
    rm -f "$PEX_TOOL.tmp"
    fail "$PEX_TOOL has sha256 $actual, expected $PEX_SHA256"
  fi
  mv "$PEX_TOOL.tmp" "$PEX_TOOL"
fi
