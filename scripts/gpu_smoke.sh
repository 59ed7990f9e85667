#!/usr/bin/env bash
# GPU smoke test: the scale paths end to end in a few minutes, one line per check, exit 1 at
# the first failure (its log is printed).
#
#   bash scripts/gpu_smoke.sh          # a machine with one CUDA GPU (two: also vLLM under
#                                      # torchrun, one engine per GPU), no network needed:
#                                      # SmolLM2-135M (packaged, converted locally) in bf16
#   bash scripts/gpu_smoke.sh --cpu    # the same checks on the CPU with the built-in model
#                                      # (what CI runs: tests/scale/test_gpu_smoke.py)
#
# Set-up first: `bash scripts/setup.sh --dev`; on the GPU machine also
# `.venv/bin/pip install -e ".[gpu]"` (vLLM and DeepSpeed for CUDA) so that .venv runs vLLM.
# SMOKE_DIR keeps the runs (default: a fresh temporary folder).
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=gpu
[[ "${1:-}" == "--cpu" ]] && MODE=cpu
OUT=${SMOKE_DIR:-$(mktemp -d -t hybrid-rl-smoke.XXXXXX)}
PY=.venv/bin/python
VLLM_PY=$PY
SMALL=(task=math trainer.max_steps=2 trainer.prompts_per_step=4 trainer.num_generations=4
       eval.every_steps=0 eval.at_start=false task.data.num_eval=4 logging.progress_bar=false
       logging.tensorboard=false)
if [[ $MODE == gpu ]]; then
  MODEL=(model=smollm2_135m model.warmup_sft=false model.dtype=bfloat16 deepspeed.bf16=true rollout.max_new_tokens=16
         rollout.sync_tolerance=0.1 num_threads=null)
  EXACT=1e-2   # GPU kernels are not bit-reproducible: resumed metrics agree to 1e-2
  VLLM_WITH=(deepspeed=zero2)  # bf16 training needs DeepSpeed's fp32 master weights
else
  MODEL=(model.tiny.hidden_size=64 model.tiny.num_heads=2 model.tiny.num_layers=2
         model.tiny.intermediate_size=64 sft.steps=4 task.data.num_train=64
         rollout.max_new_tokens=4)
  EXACT=1e-6   # float reduction order aside, a CPU resume continues exactly
  VLLM_WITH=()
  [[ -x .venv-vllm/bin/python ]] && VLLM_PY=.venv-vllm/bin/python
  export DS_ACCELERATOR=cpu
fi
export HYBRID_RL_CACHE=${HYBRID_RL_CACHE:-$OUT/cache}

check() {  # check NAME COMMAND...: one line, and the log of the first failure
  local name=$1
  shift
  if "$@" >"$OUT/$name.log" 2>&1; then
    echo "ok    $name"
  else
    echo "FAIL  $name (log: $OUT/$name.log)"
    tail -n 30 "$OUT/$name.log"
    exit 1
  fi
}

train() {  # train NAME PYTHON OVERRIDES...
  local name=$1 python=$2
  shift 2
  "$python" train.py "${SMALL[@]}" "${MODEL[@]}" "hydra.run.dir=$OUT/$name" "$@"
}

same_step() {  # same_step RUN_A RUN_B STEP TOLERANCE: the step's metrics agree (timings aside)
  "$PY" - "$@" <<'EOF'
import json, math, sys
a, b, step, tol = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
def row(run):
    rows = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
    r = next(r for r in rows if r["step"] == step and "loss" in r)
    return {k: v for k, v in r.items() if k != "time" and not k.startswith(("time/", "thr"))}
ra, rb = row(a), row(b)
bad = [k for k in ra if isinstance(ra[k], float) and not math.isclose(ra[k], rb.get(k, math.nan),
                                                                      rel_tol=tol, abs_tol=tol)]
bad += [k for k in ra if not isinstance(ra[k], float) and ra[k] != rb.get(k)]
sys.exit(f"step {step} differs in {bad}" if bad else 0)
EOF
}

echo "hybrid-rl smoke ($MODE), runs in $OUT"
if [[ $MODE == gpu ]]; then
  check cuda "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'"
fi
check grpo_zero2 train grpo_zero2 "$PY" deepspeed=zero2 checkpoint.every_steps=1
check grpo_zero3 train grpo_zero3 "$PY" deepspeed=zero3 trainer.beta=0.04
check resume_exact train resumed "$PY" deepspeed=zero2 \
  "checkpoint.resume=$OUT/grpo_zero2/checkpoints/step_000001"
check resume_matches same_step "$OUT/grpo_zero2" "$OUT/resumed" 2 "$EXACT"
if [[ $MODE == gpu || -x .venv-vllm/bin/python ]]; then
  check vllm_sync train vllm "$VLLM_PY" rollout=vllm "${VLLM_WITH[@]}" trainer.beta=0.04
  if [[ $MODE == gpu ]]; then  # (the CPU vLLM environment has no DeepSpeed)
    # the engine's first weights gathered from ZeRO-3's shards
    check vllm_zero3 train vllm_zero3 "$VLLM_PY" rollout=vllm deepspeed=zero3 trainer.beta=0.04
    gpus=$("$PY" -c "import torch; print(torch.cuda.device_count())")
    if (( gpus >= 2 )); then  # one engine per rank, each on its own GPU
      check vllm_two_gpus "$VLLM_PY" -m torch.distributed.run --nproc_per_node=2 train.py \
        "${SMALL[@]}" "${MODEL[@]}" "hydra.run.dir=$OUT/vllm_two_gpus" rollout=vllm deepspeed=zero2
    else
      echo "skip  vllm_two_gpus (one GPU visible)"
    fi
  fi
else
  echo "skip  vllm_sync (no vLLM environment: bash scripts/setup.sh --vllm)"
fi
echo "all checks passed"
