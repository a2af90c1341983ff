#!/usr/bin/env bash
# Install the project with its test extras (CPU torch wheel) and run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --disable-pip-version-check -e ".[dev]"
export DS_ACCELERATOR=cpu RAY_DEDUP_LOGS=0 TOKENIZERS_PARALLELISM=false
exec python -m pytest tests "$@"
