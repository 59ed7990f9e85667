"""The README keeps its word: every command it shows composes into a valid config, and every
config option, install extra and file it (or a config comment, or an error message) names
exists. A renamed option or a deleted file fails here, not in a user's terminal."""
import re
import shlex

import pytest
import tomllib
from helpers.runs import ROOT
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hybrid_rl.config.schema import register_configs

register_configs()
README = (ROOT / "README.md").read_text()
CONF = ROOT / "conf"
# entry script -> the config it composes (its @hydra.main, or scripts/memory_plan.py's compose)
ENTRIES = {"train.py": "config", "sft.py": "config", "train_rm.py": "train_rm",
           "evaluate.py": "evaluate", "ai_feedback.py": "ai_feedback",
           "scripts/memory_plan.py": "config"}
PLANS_ONLY = {"scripts/memory_plan.py"}  # reads sizes from the config; needs no data path
GROUPS = {p.name for p in CONF.iterdir() if p.is_dir()}


def bash_commands(text: str) -> list[str]:
    """Every command of the text's ```bash blocks, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
    return [line for block in blocks for line in block.replace("\\\n", " ").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def entry_overrides(command: str) -> tuple[str, list[str], bool] | None:
    """(config name, Hydra overrides, whether the script validates the whole config) of a
    command that runs an entry script, else None.
    Placeholders (<run>, $HEAD, ...) become plain words; a sweep keeps its first value."""
    command = re.sub(r"<[^>]*>", "placeholder", command).replace("$HEAD", "head")
    tokens = shlex.split(command, comments=True)
    script = next((t for t in tokens if t in ENTRIES), None)
    if script is None:
        return None
    overrides = []
    for token in tokens[tokens.index(script) + 1:]:
        if token.startswith("-"):  # -m, or memory_plan's own flags (the rest are theirs)
            if token != "-m":
                break
            continue
        if token == "..." or token.startswith(("hydra.", "hydra/")):
            continue
        key, _, value = token.partition("=")
        if not re.search(r"[{\[]", value):
            value = value.split(",")[0]  # a multirun sweep: its first point
        overrides.append(f"{key}={value}")
    return ENTRIES[script], overrides, script not in PLANS_ONLY


COMMANDS = [c for c in bash_commands(README) if entry_overrides(c)]


def test_the_readme_shows_commands_to_check():
    assert len(COMMANDS) >= 20 and any("train.py task=math" in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_readme_command_composes_into_a_valid_config(command):
    config_name, overrides, validates = entry_overrides(command)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        composed = compose(config_name=config_name, overrides=overrides)  # unknown keys raise
    if validates:
        OmegaConf.to_object(composed)  # the typed schema: missing and bad values raise here


def _mentioned_extras() -> set[str]:
    texts = [README] + [p.read_text() for pattern in ("hybrid_rl/**/*.py", "conf/**/*.yaml",
                                                      "scripts/*", "verifiers/*.py", "sandbox/*.py")
                        for p in ROOT.glob(pattern) if p.is_file()]
    return {name for text in texts for group in re.findall(r"\.\[([\w,-]+)\]", text)
            for name in group.split(",")}


def test_every_install_extra_named_exists():
    declared = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    mentioned = _mentioned_extras()
    assert {"dev", "gpu"} <= mentioned and mentioned <= declared, mentioned - declared


def test_every_config_option_named_in_config_comments_exists():
    named = {
        (group, option)
        for path in CONF.rglob("*.yaml")
        for comment in re.findall(r"#(.*)", path.read_text())
        for group, option in re.findall(r"\b([a-z_]+)=([\w.-]+)", comment)
        if group in GROUPS
    }
    missing = {f"{g}={o}" for g, o in named if not (CONF / g / f"{o}.yaml").is_file()}
    assert named and not missing, missing


def test_every_file_the_readme_names_exists():
    """Paths with a file extension, or folders written with their trailing slash (a metric
    such as `sandbox/unsafe` is neither)."""
    found = re.findall(
        r"(?<![\w/.])((?:scripts|bench|tests|conf|examples|hybrid_rl|verifiers|sandbox)/"
        r"[\w./-]*\w)(/?)", README)
    paths = {p for p, slash in found if slash or "." in p.rsplit("/", 1)[-1]}
    missing = sorted(p for p in paths if "*" not in p and not (ROOT / p).exists())
    assert len(paths) > 20 and not missing, missing


def test_the_config_group_table_lists_every_option():
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]*) \|", README, re.MULTILINE))
    derived = {"task_training", "preset_training", "model_task", "model_task_training",
               "mix_training"}
    for group in GROUPS - {"hydra", *derived}:  # derived from other choices, launcher
        options = {p.stem for p in (CONF / group).glob("*.yaml")}
        assert group in rows, f"the README's group table has no row for `{group}`"
        assert set(re.findall(r"`([\w.-]+)`", rows[group])) == options, group


def test_every_link_inside_the_readme_finds_its_heading():
    def slug(heading: str) -> str:  # GitHub's anchors: lower case, punctuation dropped
        return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")

    anchors = {slug(h) for h in re.findall(r"^#+ (.*)$", README, re.MULTILINE)}
    links = set(re.findall(r"\]\(#([^)]+)\)", README))
    assert links and links <= anchors, links - anchors
