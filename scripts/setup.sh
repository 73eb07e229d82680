#!/usr/bin/env bash
# Set up everything the suite needs on a fresh Debian/Ubuntu machine, idempotently:
#   system packages (ffmpeg, espeak-ng, sox; chromium, the headless browser that checks the
#   HTML reports), a virtualenv in .venv, the locked Python
#   dependencies (requirements/lock.txt) and the suite itself (editable).
# A stamp file records the hash of the lock + pyproject, so a second run returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${OMNI_VENV:-.venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
UV_VERSION=0.13.9

need_apt=()
for exe in ffmpeg ffprobe espeak-ng sox chromium; do
  command -v "$exe" >/dev/null 2>&1 || need_apt+=("$exe")
done
if ((${#need_apt[@]})); then
  echo "setup: installing system packages for: ${need_apt[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
      echo "setup: need root or sudo to apt-get install ffmpeg espeak-ng sox chromium" >&2; exit 1; }
    SUDO=sudo
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    ffmpeg espeak-ng sox chromium >/dev/null
fi

stamp="$VENV/.omni-installed"
want=$(cat requirements/lock.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

"$PYTHON" - <<'PY'
import sys
if not ((3, 11) <= sys.version_info[:2] <= (3, 12)):
    sys.exit(f"setup: Python 3.11 or 3.12 needed, found {sys.version.split()[0]}")
PY
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
[ -x "$VENV/bin/uv" ] || "$VENV/bin/python" -m pip install -q "uv==$UV_VERSION"
echo "setup: installing locked dependencies into $VENV (first run downloads torch, ~5 GB)"
"$VENV/bin/uv" pip sync --python "$VENV/bin/python" -q requirements/lock.txt
"$VENV/bin/uv" pip install --python "$VENV/bin/python" -q --no-deps -e .
"$VENV/bin/python" -c "import omni_core, omni_cli" 
echo "$want" > "$stamp"
echo "setup: done ($VENV)"
