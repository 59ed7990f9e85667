"""scripts/gpu_smoke.sh --cpu: the GPU smoke script's checks that a CPU can run (ZeRO-2 and
ZeRO-3 in one process, a checkpoint and its resume, vLLM with weight sync where .venv-vllm
exists), so the script itself stays working between GPU runs."""
import os
import subprocess

import pytest
from helpers.runs import ROOT

pytest.importorskip("deepspeed", reason="DeepSpeed is in the dev set-up (scripts/setup.sh --dev)")
pytestmark = pytest.mark.slow


def test_the_gpu_smoke_script_passes_its_cpu_checks(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_smoke.sh"), "--cpu"], cwd=ROOT,
                          env={**os.environ, "SMOKE_DIR": str(tmp_path)}, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    for check in ("grpo_zero2", "grpo_zero3", "resume_exact", "resume_matches"):
        assert f"ok    {check}" in lines, proc.stdout
    assert lines[-1] == "all checks passed"
