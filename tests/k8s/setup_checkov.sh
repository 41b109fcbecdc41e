#!/usr/bin/env bash
# checkov pins an old `packaging`, so it gets its own virtual environment, next to the
# project's (.venv-checkov, ignored by git). Idempotent; CI runs it before pytest, and the
# test fixture runs it too when the venv is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
CHECKOV_VERSION=3.3.30
if [ -x .venv-checkov/bin/checkov ] && .venv-checkov/bin/checkov --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
  exit 0
fi
python3 -m venv .venv-checkov
.venv-checkov/bin/pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
.venv-checkov/bin/checkov --version
