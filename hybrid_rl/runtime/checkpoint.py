"""Checkpoints: policy (Hugging Face folder), optimizer, scheduler, RNG states, data position.

Saving writes into a temporary folder, flushes every file and the folder to disk (fsync), and
only then renames it into place and flushes the parent: a crash or a power loss mid-save leaves
the previous checkpoint whole, never a complete-looking empty one. A manifest of SHA-256
checksums is verified on load. Every process's random generators (Python, NumPy, torch CPU and
CUDA) are saved, and each process gets its own back on resume.

Layout: <run>/checkpoints/step_000100/{policy/, trainer_state.pt, manifest.json}
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

STATE_FILE = "trainer_state.pt"
MANIFEST = "manifest.json"
BEST = "best"  # checkpoints/best: the policy of the best held-out evaluation
BEST_INFO = "best.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not fit this run."""


log = logging.getLogger("hybrid_rl")


def rng_state() -> dict[str, Any]:
    """This process's generators; CUDA's (every device it sees) where it has a GPU."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            log.warning("the checkpoint's CUDA generators are for %d devices, this process "
                        "sees %d: CUDA sampling is not restored exactly", len(state["cuda"]),
                        torch.cuda.device_count())


def restore_rng_for_rank(saved: dict[str, Any], rank: int) -> None:
    """Each process its own generators back. A checkpoint from another process count (or one
    that holds only rank 0's) gives the run a valid state, but not an exact continuation."""
    per_rank = saved.get("rng_per_rank") or [saved["rng"]]
    if rank >= len(per_rank) or (rank > 0 and "rng_per_rank" not in saved):
        log.warning("the checkpoint holds random generators for %d process(es); process %d "
                    "takes process %d's: the resumed run is valid but not an exact continuation",
                    len(per_rank), rank, rank % len(per_rank))
    set_rng_state(per_rank[rank % len(per_rank)])


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):  # files before their folders
        _fsync(path)
    _fsync(folder)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_manifest(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    manifest = {str(p.relative_to(folder)): _sha256(p) for p in files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))


def verify_manifest(folder: Path) -> None:
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{folder} has no {MANIFEST}: not a complete checkpoint")
    for name, digest in json.loads(manifest_path.read_text()).items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint {folder} is missing {name}")
        if _sha256(path) != digest:
            raise CheckpointError(f"checkpoint {folder}: {name} does "
                                  "not match its checksum (corrupt)")


def save_checkpoint(
    run_dir: Path, step: int, *, policy, tokenizer, optimizer, scheduler, state: dict[str, Any],
        keep_last: int, policy_state: Optional[dict[str, torch.Tensor]] = None,
        rng_per_rank: Optional[list[dict[str, Any]]] = None,
) -> Path:
    """`optimizer` is an optimizer or its state_dict; `policy_state` replaces the module's own
    weights (a ZeRO-3 module holds only its shard: the engine gathers the full ones);
    `rng_per_rank` holds every process's generators (default: this process's)."""
    root = Path(run_dir) / "checkpoints"
    final = root / f"step_{step:06d}"
    tmp = root / f".step_{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save_pretrained(tmp / "policy", state_dict=policy_state)
    tokenizer.save_pretrained(tmp / "policy")
    optimizer_state = optimizer if isinstance(optimizer, dict) else optimizer.state_dict()
    torch.save(
        {"step": step, "optimizer": optimizer_state, "scheduler": scheduler.state_dict(),
         "rng": rng_state(), "rng_per_rank": rng_per_rank or [rng_state()], **state},
        tmp / STATE_FILE,
    )
    _write_manifest(tmp)
    _fsync_tree(tmp)  # on disk before it can look complete
    if final.exists():  # re-saving the same step (e.g. final save right after a periodic one)
        shutil.rmtree(final)
    tmp.rename(final)
    _fsync(root)  # the rename itself
    for old in sorted(root.glob("step_*"))[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_best_policy(
    run_dir: Path, *, policy, tokenizer, info: dict[str, Any],
    policy_state: Optional[dict[str, torch.Tensor]] = None,
) -> Path:
    """The policy of the best held-out evaluation so far, as `checkpoints/best`: a model folder
    (`policy/`) with `best.json` (`info`: its step, accuracy and number of problems) and a
    manifest over both. It is written under a temporary name and renamed, so a crash leaves the
    previous best whole; keep_last never deletes it (it is not a `step_*` folder)."""
    root = Path(run_dir) / "checkpoints"
    final, tmp, old = root / BEST, root / f".{BEST}.tmp", root / f".{BEST}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save_pretrained(tmp / "policy", state_dict=policy_state)
    tokenizer.save_pretrained(tmp / "policy")
    (tmp / BEST_INFO).write_text(json.dumps(info, indent=1))
    _write_manifest(tmp)
    _fsync_tree(tmp)
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    _fsync(root)
    shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(path: str | Path) -> Optional[Path]:
    """A checkpoint folder itself, or the latest complete one inside a run folder."""
    path = Path(path).expanduser()
    if (path / STATE_FILE).is_file():
        return path
    candidates = sorted((path / "checkpoints").glob("step_*")) if path.is_dir() else []
    return candidates[-1] if candidates else None


def load_trainer_state(folder: Path) -> dict[str, Any]:
    verify_manifest(folder)
    try:
        # our own file: RNG states are tuples. Onto the CPU: a state saved from cuda:0 must not
        # land on cuda:0 in every process of the resumed run
        return torch.load(folder / STATE_FILE, weights_only=False, map_location="cpu")
    except Exception as exc:
        raise CheckpointError(f"cannot read {folder / STATE_FILE}: {exc}") from exc


def resolve_resume(resume: str | None, run_dir: Path) -> Path | None:
    """checkpoint.resume's checkpoint: None (start fresh), "auto" (the latest in `run_dir`, if
    any) or a run folder or checkpoint path, which must hold one. A requeued SLURM job
    resumes as with "auto" (hybrid_rl/runtime/preemption.py)."""
    from hybrid_rl.runtime.preemption import requeued

    if resume is None and requeued():
        resume = "auto"
    if resume is None:
        return None
    ckpt = find_checkpoint(run_dir if resume == "auto" else resume)
    if ckpt is None and resume != "auto":
        raise FileNotFoundError(f"checkpoint.resume={resume}: no checkpoint found there")
    return ckpt
