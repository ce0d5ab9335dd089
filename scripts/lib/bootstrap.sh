# Shared by scripts/serve and scripts/test: make .venv and install postvault into it.
# Heavy downloads (pip wheels, corpora) are cached outside the repo, under $POSTVAULT_CACHE.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export POSTVAULT_CACHE="${POSTVAULT_CACHE:-$HOME/.cache/postvault}"
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$HOME/.cache/pip}"
mkdir -p "$POSTVAULT_CACHE"

find_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

ensure_python() {
  if ! python="$(find_python)" || ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "postvault: installing Python 3 with venv from Debian's packages" >&2
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
    else sudo apt-get update -qq && sudo apt-get install -y -qq python3 python3-venv python3-pip >/dev/null; fi
    python="$(find_python)"
  fi
}

# ensure_venv EXTRAS: (re)install when pyproject.toml changed since the last install.
ensure_venv() {
  local extras="$1" stamp="$repo/.venv/.postvault-installed"
  ensure_python
  if [ ! -x "$repo/.venv/bin/python" ]; then
    "$python" -m venv "$repo/.venv"
  fi
  local want; want="$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1)-$extras"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "postvault: installing into $repo/.venv (extras: ${extras:-none})" >&2
    "$repo/.venv/bin/python" -m pip install -q --upgrade pip
    "$repo/.venv/bin/python" -m pip install -q -e "$repo${extras:+[$extras]}"
    echo "$want" > "$stamp"
  fi
}
