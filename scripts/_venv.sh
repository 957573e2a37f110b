# Sourced by scripts/demo and scripts/test: make .venv and install torch 2.13.0 (CPU) first, then the package.
# Installing torch explicitly first matters: a bare `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${NAMES_EXTRAS:-}" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch, namesclf" || { echo "install failed" >&2; exit 1; }
export PATH="$PWD/.venv/bin:$PATH"
