"""Every config-group option composes; typos and bad values fail at start, naming the field."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from hybrid_rl.config.reward import RewardConfig
from hybrid_rl.config.rollout import RolloutConfig
from hybrid_rl.config.run import DeepSpeedConfig
from hybrid_rl.config.schema import ConfigError, register_configs
from hybrid_rl.config.trainer import TrainerConfig
from hybrid_rl.recipes.build import to_config

CONF = Path(__file__).resolve().parents[1] / "conf"
register_configs()
SECTIONS = {"trainer": TrainerConfig, "reward": RewardConfig, "rollout": RolloutConfig,
            "deepspeed": DeepSpeedConfig}
# Groups train.py loads by another group's choice (conf/config.yaml: `optional X: ${task}`)
DERIVED = {"task": "task_training", "preset": "preset_training"}
# Groups loaded by two choices at once (`optional model_task: ${model}_${task}`)
BY_MODEL_AND_TASK = ("model_task", "model_task_training")
GROUPS = {g.name: sorted(p.stem for p in g.glob("*.yaml")) for g in CONF.iterdir()
          if g.is_dir() and g.name not in (*DERIVED.values(), *BY_MODEL_AND_TASK)}


def _compose(overrides, root="config"):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=root, overrides=overrides)


def test_groups_exist():
    assert {"task", "model", "rollout", "trainer", "reward"} <= set(GROUPS)


@pytest.mark.parametrize("group, option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_option_composes_and_validates(group, option):
    overrides = [f"{group}={option}"]
    if group == "task" and option in ("gsm8k", "math_boxed"):
        overrides.append("task.data.path=/data/x.jsonl")
    if group == "model" and option == "hf":
        overrides.append("model.path=/models/x")
    composed = _compose(overrides)
    cfg = to_config(composed)
    if group == "preset" and option != "none":  # model, rollout, DeepSpeed and trainer together
        assert cfg.model.name == option and cfg.rollout.backend == "vllm" and cfg.deepspeed.bf16
    # every value the option's file sets (and the options it extends, and its training half)
    # reaches the config
    values = list(_values_set_by(group, option))
    if group in DERIVED and (CONF / DERIVED[group] / f"{option}.yaml").is_file():
        values += list(_values_set_by(DERIVED[group], option))
    for key, value in dict(values).items():  # a file's own value wins over the one it extends
        if key.split(".")[-1] not in (o.split("=")[0].split(".")[-1] for o in overrides[1:]):
            assert OmegaConf.select(composed, key) == value, (key, value)
    if not values and _is_global(group, option):  # sets nothing: the default composition
        assert composed == _compose([])
    elif not values:  # a file that sets nothing: the section is the schema's own defaults,
        # but for what the default run's tuned values (conf/model_task*/tiny_math.yaml) set
        expected = OmegaConf.structured(SECTIONS[group])
        for key, value in [*_values_set_by("model_task", "tiny_math"),
                           *_values_set_by("model_task_training", "tiny_math")]:
            if key.startswith(f"{group}."):
                OmegaConf.update(expected, key[len(group) + 1:], value)
        assert OmegaConf.to_container(composed[group]) == OmegaConf.to_container(expected)


def _is_global(group, option):
    return (CONF / group / f"{option}.yaml").read_text().startswith("# @package _global_")


def _values_set_by(group, option):
    """(dotted key, value) for every leaf the YAML file sets, interpolations left out."""
    node = OmegaConf.load(CONF / group / f"{option}.yaml") or OmegaConf.create()
    is_global = _is_global(group, option)
    for parent in node.pop("defaults", []):
        if isinstance(parent, str) and not parent.startswith("_"):
            yield from _values_set_by(group, parent)
    flat = OmegaConf.to_container(node, resolve=False)

    def leaves(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from leaves(f"{prefix}.{k}" if prefix else k, v)
        elif not (isinstance(value, str) and "${" in value):
            yield prefix, value

    yield from leaves("" if is_global else group, flat)


@pytest.mark.parametrize("root", ["train_rm", "evaluate"])
@pytest.mark.parametrize("option", GROUPS["task"] + [f"preset={p}" for p in GROUPS["preset"]])
def test_other_recipes_carry_no_training_fields(root, option):
    """train_rm.py and evaluate.py compose every task and preset from their own schemas: the
    task's and preset's sampling and warm-up values arrive, training sections do not exist."""
    overrides = [option if option.startswith("preset=") else f"task={option}"]
    if option in ("gsm8k", "math_boxed"):
        overrides.append("task.data.path=/data/x.jsonl")
    composed = _compose(overrides, root)
    to_config(composed)
    assert not {"trainer", "deepspeed", "logging", "checkpoint"} & set(composed)
    grpo = _compose(overrides)
    for section in ("task", "model", "rollout", "sft"):
        assert composed[section] == grpo[section], section
    assert ("evaluate" in composed) == (root == "evaluate")
    with pytest.raises(ConfigCompositionException):
        _compose([*overrides, "trainer.max_steps=3"], root)


@pytest.mark.parametrize("overrides, tuned", [
    ([], True), (["task=explain"], False), (["model=smollm2_135m"], False),
    (["preset=qwen2.5-0.5b-instruct"], False), (["preset=llama-3.2-1b-instruct"], False),
])
def test_values_tuned_for_the_builtin_model_on_math_reach_only_that_pair(overrides, tuned):
    """conf/model_task*/tiny_math.yaml: the default run's warm-up and optimiser; a preset's
    model keeps its own learning rate and length, and every command gets the same warm-up."""
    values = [*_values_set_by("model_task", "tiny_math"),
              *_values_set_by("model_task_training", "tiny_math")]
    composed = _compose(overrides)
    assert all((OmegaConf.select(composed, k) == v) == tuned for k, v in values), values
    for root in ("evaluate", "train_rm"):
        assert _compose(overrides, root).sft == composed.sft


def test_math_hybrid_on_the_builtin_model_takes_only_the_math_warm_up_length():
    """conf/model_task/tiny_math_hybrid.yaml: the same 1,500-step warm-up as task=math, so the
    two start equally trained; task=math's GRPO values stay its own."""
    hybrid, math = _compose(["task=math_hybrid"]), _compose([])
    assert hybrid.sft.steps == math.sft.steps == 1500
    tuned = _values_set_by("model_task_training", "tiny_math")
    assert all(OmegaConf.select(hybrid, k) != v for k, v in tuned), tuned


@pytest.mark.parametrize("overrides, tuned", [
    (["model=smollm2_135m"], True), (["model=smollm2_135m", "task=math_hybrid"], False),
    ([], False), (["preset=qwen2.5-0.5b-instruct"], False),
])
def test_values_sized_for_smollm2_on_math_reach_only_that_pair(overrides, tuned):
    """conf/model_task*/smollm2_135m_math.yaml: the packaged model's warm-up, held-out set and
    CPU-sized steps; train.py, sft.py, evaluate.py and train_rm.py share the warm-up and the
    held-out problems."""
    values = dict([*_values_set_by("model_task", "smollm2_135m_math"),
                   *_values_set_by("model_task_training", "smollm2_135m_math")])
    composed = _compose(overrides)
    if tuned:
        assert all(OmegaConf.select(composed, k) == v for k, v in values.items()), values
    else:  # its length: the warm-up's steps and the run's
        assert composed.sft.steps != values["sft.steps"]
        assert composed.trainer.max_steps != values["trainer.max_steps"]
    for root in ("evaluate", "train_rm"):
        other = _compose(overrides, root)
        assert (other.sft, other.task.data, other.model) == (
            composed.sft, composed.task.data, composed.model)


def test_unknown_rollout_backend_is_named_before_any_model():
    from hybrid_rl.recipes.build import build_rollout

    cfg = to_config(_compose(["rollout.backend=tgi"]))
    with pytest.raises(ConfigError, match="rollout.backend: unknown rollout backend 'tgi'"):
        build_rollout(cfg, policy=None, tokenizer=None)


def test_defaults_are_the_documented_ones():
    cfg = to_config(_compose([]))
    assert (cfg.task.name, cfg.model.source, cfg.rollout.backend) == ("math", "builtin", "hf")
    assert cfg.model.warmup_sft and cfg.task.signals()["correctness"].verifier == "math"


def test_signals_can_be_added_and_reweighted_from_the_command_line():
    cfg = to_config(_compose(["task.rewards.correctness.weight=0.5",
                              "+task.rewards.also={verifier: math, weight: 0.1}"]))
    assert {k: (s.verifier, s.weight) for k, s in cfg.task.signals().items()} == {
        "correctness": ("math", 0.5), "also": ("math", 0.1)}


def test_trainer_presets_set_their_variant():
    dapo = to_config(_compose(["trainer=dapo"])).trainer
    assert (dapo.epsilon_high, dapo.dynamic_sampling, dapo.loss_type) == (0.28, "fill", "dapo")
    dr = to_config(_compose(["trainer=dr_grpo"])).trainer
    assert (dr.advantage_scale, dr.loss_type) == ("none", "dr_grpo")
    assert to_config(_compose(["trainer=rloo"])).trainer.advantage == "rloo"
    pp = to_config(_compose(["trainer=reinforce_pp"])).trainer
    assert (pp.advantage, pp.beta) == ("reinforce_pp", 0.01)
    gspo = to_config(_compose(["trainer=gspo"])).trainer
    assert (gspo.importance_level, gspo.loss_type, gspo.epsilon, gspo.mu) == (
        "sequence", "grpo", 3e-4, 2)
    ppo = to_config(_compose(["trainer=ppo"])).trainer
    assert (ppo.advantage, ppo.beta, ppo.critic.minibatches) == ("gae", 0.02, 2)
    assert ppo.optimizer_steps() == ppo.max_steps * 2 * 2  # the schedule spans every minibatch


def test_typo_in_key_fails_at_composition():
    with pytest.raises(ConfigCompositionException, match="lrr"):
        _compose(["trainer.lrr=1"])


def test_wrong_type_fails_at_composition():
    with pytest.raises(ConfigCompositionException, match="num_generations"):
        _compose(["trainer.num_generations=many"])


@pytest.mark.parametrize(
    "override, message", [
        ("trainer.num_generations=1", "trainer.num_generations"),
        ("trainer.learning_rate=-0.1", "trainer.learning_rate"),
        ("trainer.loss_type=ppo", "trainer.loss_type: must be one of"),
        ("trainer.advantage_scale=rank", "trainer.advantage_scale"),
        ("rollout.top_p=1.5", "rollout.top_p"), ("model.dtype=int8", "model.dtype"),
        ("task.accuracy_signal=style", "task.accuracy_signal"),
        ("task.data.source=xml", "task.data.source"),
        ("model.tiny.num_heads=3", "model.tiny.hidden_size"),
        ("+task.rewards.style={weight: 0.5}", "task.rewards.style.verifier: "
                                              "no verifier produces this signal"),
        ("+task.rewards.correctness.wieght=2", "task.rewards.correctness.wieght: unknown key"),
        ("task.rewards.correctness.weight=heavy", "task.rewards.correctness.weight: "
                                                  "must be a number"),
        ("+task.rewards.correctness.normalize=zscore", "task.rewards.correctness.normalize: "
                                                       "must be one of"),
        ("+task.rewards.correctness.gate=correctness", "task.rewards.correctness.gate: "
                                                       "must name another signal"),
        ("+task.rewards.x={verifier: {foo: 1}}", "task.rewards.x.verifier: "
                                                 "a mapping needs `_target_`"),
        ("task.response_style=prose", "task.response_style: must be one of"),
        ("reward_model.data.label_noise=0.5", "reward_model.data.label_noise"),
        ("reward_model.data.source=csv", "reward_model.data.source: must be one of"),
        ("reward_model.data.source=jsonl", "reward_model.data.path: source=jsonl needs"),
        ("reward.hacking_watch.window=1", "reward.hacking_watch.window"),
        ("reward_model.eval_fraction=0", "reward_model.eval_fraction"),
    ],
)
def test_bad_values_fail_naming_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        to_config(_compose([override]))


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as err:
        to_config(_compose(["trainer.num_generations=1", "trainer.beta=-1"]))
    assert "trainer.num_generations" in str(err.value) and "trainer.beta" in str(err.value)


def test_unknown_verifier_is_named(tmp_path):
    from hybrid_rl.recipes.build import build_scorer

    cfg = to_config(_compose(["task.rewards.correctness.verifier=nope"]))
    with pytest.raises(ConfigError, match="task.rewards.correctness.verifier: "
                                          "unknown verifier 'nope'"):
        build_scorer(cfg, tmp_path)


def test_missing_mandatory_value_is_named():
    with pytest.raises(ConfigError, match="task.data.path"):
        to_config(_compose(["task=gsm8k"]))
