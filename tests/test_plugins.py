"""The plugin path: an installed package's verifiers found through the entry-point group, a
`_target_` factory from the config, and the decorator registry."""
import json
import shutil
import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest
from helpers.runs import ROOT, read_jsonl, run_entry

from hybrid_rl import plugins
from hybrid_rl.config.checks import ConfigError
from hybrid_rl.config.task import DataConfig
from hybrid_rl.data.loaders import load_task_samples, rows_to_samples
from hybrid_rl.data.samples import DataError
from hybrid_rl.plugins import TASK_GENERATORS
from verifiers import register_verifier
from verifiers.registry import VERIFIERS, PluginError, Registry

EXAMPLE = ROOT / "examples" / "hybrid-rl-plugin-example"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """The example package installed into a folder of its own, put on PYTHONPATH for runs."""
    site, source = tmp_path_factory.mktemp("site"), tmp_path_factory.mktemp("src") / "plugin"
    shutil.copytree(EXAMPLE, source)  # pip builds in the source folder: keep the checkout clean
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), str(source)],
                   check=True, capture_output=True, timeout=300)
    return site


def test_entry_points_register_the_plugin_verifiers(installed_plugin):
    code = ("from verifiers import available_verifiers; import json; "
            "print(json.dumps(available_verifiers()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                         env={"PYTHONPATH": str(installed_plugin)},
                         capture_output=True, text=True, check=True).stdout
    # the trainer's own learned signal comes through the same entry-point group
    assert {"concise", "digits_only", "math", "code",
            "preference"} <= set(json.loads(out.splitlines()[-1]))


@pytest.mark.slow
def test_training_with_the_installed_plugin_and_a_target_factory(installed_plugin, tmp_path):
    run_dir = tmp_path / "run"
    run_entry("train.py", run_dir, "trainer.max_steps=2",
              "+task.rewards.brevity={verifier: concise, weight: 0.1}",
              "+task.rewards.plain={verifier: digits_only, weight: 0.1, gate: correctness}",
              "+task.rewards.seven={verifier: {_target_: "
              "hybrid_rl_plugin_example.verifiers.make_keyword_verifier, "
              "keyword: '7', score: 2.0}, weight: 0.0}",
              cache=tmp_path / "cache", env={"PYTHONPATH": str(installed_plugin)})
    step = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "loss" in r][0]
    for name in ("brevity", "plain", "seven", "correctness"):
        assert step[f"reward/{name}/mean"] is not None, name
    assert 0.0 <= step["reward/brevity/mean"] <= 1.0 and 0.0 <= step["reward/seven/mean"] <= 2.0
    assert step["reward/seven/weighted_mean"] == 0.0  # weight 0: logged only


def test_unknown_verifier_and_bad_target_are_named(tmp_path):
    proc = run_entry("train.py", tmp_path / "a", "+task.rewards.x={verifier: nope}",
                     cache=tmp_path / "c", check=False)
    assert (
        proc.returncode != 0 and "task.rewards.x.verifier: unknown verifier 'nope'" in proc.stderr
    )
    proc = run_entry("train.py", tmp_path / "b", "+task.rewards.x={verifier: {_target_: "
                                                 "no.such.factory}}",
                     cache=tmp_path / "c", check=False)
    assert (
        proc.returncode != 0
        and "task.rewards.x.verifier: cannot instantiate 'no.such.factory'" in proc.stderr
    )


def test_decorator_registration_and_name_clash():
    @register_verifier("test_only_upper")
    def upper(completions, references, **_):
        return [float(c.isupper()) for c in completions]

    try:
        with pytest.raises(ValueError, match="already registered"):
            register_verifier("test_only_upper")(lambda c, r, **_: [0.0] * len(c))
    finally:
        VERIFIERS._registered.pop("test_only_upper")


def test_an_entry_point_that_fails_to_load_is_named(monkeypatch):
    broken = EntryPoint(name="broken", value="no_such_module.sub:fn", group="hybrid_rl.verifiers")
    registry = Registry("verifier", "hybrid_rl.verifiers", {})
    monkeypatch.setattr(registry, "_entry_points", lambda: {"broken": broken})
    assert registry.names() == ["broken"]
    with pytest.raises(PluginError, match=r"verifier 'broken': entry point 'no_such_module.sub:fn' "
                       r"of an installed package \(group 'hybrid_rl.verifiers'\) failed to load: "
                       r"ModuleNotFoundError"):
        registry.get("broken")


def test_task_generators_and_row_formats_plug_in_by_name():
    @TASK_GENERATORS.register("test_only_doubles")
    def doubles(num, seed, **_):
        return [(f"2*{i + seed}=", str(2 * (i + seed)), str(2 * (i + seed))) for i in range(num)]

    try:
        train, held, _ = load_task_samples(
            DataConfig(generator="test_only_doubles", num_train=3, num_eval=2, seed=0), "double")
        assert [s.reference for s in train] == ["0", "2", "4"]
        assert {s.prompt for s in held}.isdisjoint(s.prompt for s in train) and len(held) == 2
        with pytest.raises(DataError, match="task.data.generator: unknown task generator 'nope'"):
            load_task_samples(DataConfig(generator="nope"), "x")
        with pytest.raises(DataError, match="task.data.answer_format: unknown row format 'nope'"):
            rows_to_samples([{"q": "a", "a": "b"}], "f", DataConfig(answer_format="nope"), "x", [])
    finally:
        TASK_GENERATORS._registered.pop("test_only_doubles")


def test_a_verifier_class_that_needs_unknown_settings_is_named():
    class NeedsAThreshold:
        def __init__(self, threshold):
            self.threshold = threshold

    VERIFIERS.register("test_only_threshold")(NeedsAThreshold)
    try:
        with pytest.raises(ConfigError, match="task.rewards.x.verifier: cannot construct verifier "
                           "'test_only_threshold': .*threshold"):
            plugins.build(VERIFIERS, "test_only_threshold", "task.rewards.x.verifier",
                          sandbox=None)
    finally:
        VERIFIERS._registered.pop("test_only_threshold")
