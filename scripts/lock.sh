#!/usr/bin/env bash
# Re-resolve requirements/lock.txt from pyproject.toml (run after changing dependencies).
# The override file settles laion-clap's numpy<2 pin against pyannote.audio's numpy>=2; see
# docs/dependencies.md.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/uv pip compile pyproject.toml --extra dev \
  --override requirements/overrides.txt \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --no-header --output-file requirements/lock.txt
