"""Checkpoints: round trip, atomic replacement, keep-last, corruption detection."""
import random

import pytest
import torch

from hybrid_rl.algo.optim import make_optimizer, make_scheduler
from hybrid_rl.models.loading import builtin_model_folder, load_policy, load_tokenizer
from hybrid_rl.runtime.checkpoint import (
    CheckpointError,
    find_checkpoint,
    load_trainer_state,
    save_checkpoint,
    set_rng_state,
)

TINY = dict(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
            max_position_embeddings=32, init_seed=0)


@pytest.fixture
def parts(tmp_path):
    folder = builtin_model_folder(TINY, tmp_path / "cache")
    model, tok = load_policy(str(folder)), load_tokenizer(str(folder))
    opt = make_optimizer(model, 1e-3, 0.0)
    sched = make_scheduler(opt, "cosine", 2, 10)
    model(input_ids=torch.tensor([[5, 6, 7]]), labels=torch.tensor([[5, 6, 7]])).loss.backward()
    opt.step()
    sched.step()
    return model, tok, opt, sched


def _save(run, step, parts, keep=2):
    model, tok, opt, sched = parts
    return save_checkpoint(run, step, policy=model, tokenizer=tok, optimizer=opt, scheduler=sched,
                           state={"data": {"epoch": 0, "index": step}}, keep_last=keep)


def test_round_trip_restores_everything(tmp_path, parts):
    random.seed(5)
    torch.manual_seed(5)
    path = _save(tmp_path, 3, parts)
    expected = (random.random(), torch.rand(1).item())
    state = load_trainer_state(path)
    set_rng_state(state["rng"])
    assert (random.random(), torch.rand(1).item()) == expected
    assert state["step"] == 3 and state["data"]["index"] == 3
    assert state["scheduler"]["last_epoch"] == 1 and state["optimizer"]["state"]
    reloaded = load_policy(str(path / "policy"))
    for a, b in zip(parts[0].state_dict().values(), reloaded.state_dict().values()):
        assert torch.equal(a, b)


def test_keep_last_and_latest(tmp_path, parts):
    for step in (1, 2, 3):
        _save(tmp_path, step, parts, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_000002", "step_000003"]
    assert find_checkpoint(tmp_path).name == "step_000003"
    assert find_checkpoint(tmp_path / "checkpoints" / "step_000002").name == "step_000002"
    assert find_checkpoint(tmp_path / "nothing") is None


def test_interrupted_save_leaves_previous_checkpoint(tmp_path, parts):
    _save(tmp_path, 1, parts)
    model, tok, opt, sched = parts

    class Boom(RuntimeError):
        pass

    def broken_state_dict():
        raise Boom("disk full")

    opt.state_dict = broken_state_dict
    with pytest.raises(Boom):
        _save(tmp_path, 2, parts)
    assert find_checkpoint(tmp_path).name == "step_000001"
    load_trainer_state(find_checkpoint(tmp_path))  # still whole and verified


def test_corruption_is_detected(tmp_path, parts):
    path = _save(tmp_path, 1, parts)
    weights = path / "policy" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        load_trainer_state(path)
    (path / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        load_trainer_state(path)


def test_every_file_and_folder_reaches_the_disk_before_the_rename(tmp_path, parts, monkeypatch):
    """A power loss right after the rename must not find a complete-looking checkpoint whose
    files were still in the page cache: every file and folder is fsynced before the rename,
    and the parent folder (the rename itself) after it."""
    import os
    from pathlib import Path

    events = []
    real_fsync, real_rename = os.fsync, Path.rename

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def rename(self, target):
        events.append(("rename", str(target)))
        return real_rename(self, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Path, "rename", rename)
    final = _save(tmp_path, 4, parts)
    renamed = events.index(("rename", str(final)))
    tmp = str(final.parent / ".step_000004.tmp")
    synced_before = {path for kind, path in events[:renamed] if kind == "fsync"}
    written = {str(p).replace(str(final), tmp) for p in final.rglob("*")} | {tmp}
    assert written <= synced_before, written - synced_before
    assert ("fsync", str(final.parent)) in events[renamed:]


def test_each_process_gets_its_own_generators_back(tmp_path, parts):
    from hybrid_rl.runtime.checkpoint import restore_rng_for_rank, rng_state

    model, tok, opt, sched = parts
    per_rank = []
    for seed in (1, 2):  # two processes' generators
        random.seed(seed)
        torch.manual_seed(seed)
        per_rank.append(rng_state())
    path = save_checkpoint(tmp_path, 1, policy=model, tokenizer=tok, optimizer=opt,
                           scheduler=sched, state={}, keep_last=2, rng_per_rank=per_rank)
    state = load_trainer_state(path)
    draws = []
    for rank in (0, 1):
        restore_rng_for_rank(state, rank)
        draws.append((random.random(), torch.rand(1).item()))
    for rank, seed in enumerate((1, 2)):
        random.seed(seed)
        torch.manual_seed(seed)
        assert draws[rank] == (random.random(), torch.rand(1).item())


def test_cuda_generators_are_saved_and_restored_where_there_is_a_gpu(monkeypatch):
    """No GPU here: the CUDA calls are stood in for, to check the wiring both ways."""
    from hybrid_rl.runtime.checkpoint import rng_state, set_rng_state

    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: ["gpu0", "gpu1"])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    state = rng_state()
    assert state["cuda"] == ["gpu0", "gpu1"]
    set_rng_state(state)
    assert restored == [["gpu0", "gpu1"]]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # fewer GPUs: warned, not forced
    set_rng_state(state)
    assert restored == [["gpu0", "gpu1"]]
