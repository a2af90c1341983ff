#!/usr/bin/env bash
# Install the project with its test extras (CPU torch wheel, vLLM's CPU build, compat step) and run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --dev
# RAY_AUTH_MODE=disabled: the tests start many local Ray instances; with token authentication on, the first one
# would write a token to ~/.ray/auth_token, which turns token authentication on for every later `ray start` of this
# user on the machine (other users' clusters included). tests/cluster/test_ray_auth.py turns it on for a cluster of
# its own (own HOME, temp dir and ports).
export DS_ACCELERATOR=cpu RAY_DEDUP_LOGS=0 TOKENIZERS_PARALLELISM=false RAY_AUTH_MODE=disabled
# the lint checks run first and fail the command, so the tree stays formatted and clean and the layers hold
python -m ruff check .
python -m ruff format --check .
lint-imports --no-cache --no-logo  # the import contracts in pyproject.toml ([tool.importlinter])
rc=0
python -m pytest tests "$@" || rc=$?
if [[ $rc -eq 5 ]]; then
  echo "test.sh: pytest collected no tests (exit 5); a test command that runs nothing is broken: check the paths," \
    "-k/-m filters and collection errors above" >&2
  exit 1
fi
exit $rc
