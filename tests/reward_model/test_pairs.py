"""Preference rows in TRL's four formats, from files, with errors that name file, row and field."""
import json
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hybrid_rl.rewards.learned.pairs import (
    PreferenceDataError,
    PreferencePair,
    load_pairs,
    pair_from_row,
    split_pairs,
    write_pairs,
)


def data_cfg(source, path, **kw):
    base = dict(source=source, path=str(path), eval_path=None, name=None, split="train",
                eval_split=None, on_bad_row="error")
    return SimpleNamespace(**{**base, **kw})


def test_explicit_and_implicit_plain_text():
    explicit = pair_from_row({"prompt": "2+2=", "chosen": " 4", "rejected": " 5"})
    assert explicit == PreferencePair("2+2=", " 4", " 5")
    implicit = pair_from_row({"chosen": "Q: 2+2? A: 4", "rejected": "Q: 2+2? A: 5"})
    assert (implicit.prompt, implicit.chosen, implicit.rejected) == ("Q: 2+2? A:", " 4", " 5")
    word = pair_from_row({"chosen": "The answer is four", "rejected": "The answer is five"})
    # no split word
    assert (word.prompt, word.chosen, word.rejected) == ("The answer is", " four", " five")


def test_conversational_explicit_and_implicit_render_the_same():
    user = [{"role": "user", "content": "2+2?"}]
    good, bad = [{"role": "assistant", "content": "4"}], [{"role": "assistant", "content": "5"}]
    explicit = pair_from_row({"prompt": user, "chosen": good, "rejected": bad})
    implicit = pair_from_row({"chosen": user + good, "rejected": user + bad})
    assert explicit == implicit == PreferencePair("user: 2+2?", "assistant: 4", "assistant: 5")


@pytest.mark.parametrize("row, field", [
    ({"prompt": "p", "chosen": "a"}, "'rejected'"),
    ({"prompt": "p", "chosen": "a", "rejected": ""}, "non-empty"),
    ({"prompt": "p", "chosen": [{"role": "assistant", "content": "a"}], "rejected": "b"}, "mix"),
    ({"prompt": [], "chosen": [{"text": "a"}], "rejected": [{"role": "x", "content": "b"}]},
     "role"),
    ({"prompt": "p", "chosen": "a", "rejected": "b", "margin": "big"}, "'margin'"),
])
def test_bad_rows_name_the_field(row, field):
    with pytest.raises(ValueError, match=field):
        pair_from_row(row)


def test_jsonl_errors_name_file_and_line_and_skip_keeps_the_rest(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": '
                    '"b"}\n{"prompt": "q", "chosen": "a"\n')
    with pytest.raises(PreferenceDataError, match=r"prefs.jsonl, line 2: not valid JSON"):
        load_pairs(data_cfg("jsonl", path), [])
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": '
                    '"b"}\n{"prompt": "q", "chosen": "a"}\n')
    with pytest.raises(PreferenceDataError, match=r"prefs.jsonl, row 2: missing field 'rejected'"):
        load_pairs(data_cfg("jsonl", path), [])
    skipped = []
    pairs, held = load_pairs(data_cfg("jsonl", path, on_bad_row="skip"), skipped)
    assert len(pairs) == 1 and held is None and "row 2" in skipped[0]


def test_written_pairs_read_back_from_jsonl_and_parquet(tmp_path):
    pairs = [PreferencePair("p", "a", "b", 0.5, True), PreferencePair("q", "c", "d")]
    write_pairs(pairs, tmp_path / "out.jsonl")
    assert load_pairs(data_cfg("jsonl", tmp_path / "out.jsonl"), [])[0] == pairs
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "out.parquet")
    assert load_pairs(data_cfg("parquet", tmp_path / "out.parquet"), [])[0] == pairs
    (tmp_path / "all.json").write_text(json.dumps(rows))
    (tmp_path / "held.json").write_text(json.dumps(rows[:1]))
    train, held = load_pairs(data_cfg("json", tmp_path / "all.json",
                                      eval_path=str(tmp_path / "held.json")), [])
    assert train == pairs and held == pairs[:1]


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(PreferenceDataError, match="not found: .*nope.jsonl"):
        load_pairs(data_cfg("jsonl", tmp_path / "nope.jsonl"), [])


def test_split_keeps_every_prompt_on_one_side():
    pairs = [PreferencePair(f"p{i % 50}", "a", f"b{i}") for i in range(200)]
    train, held = split_pairs(pairs, 0.2, seed=0)
    assert len(train) + len(held) == 200 and held
    assert not {p.prompt for p in train} & {p.prompt for p in held}
    assert len({p.prompt for p in held}) == 10
