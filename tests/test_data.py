"""Task data: generators, local files in GSM8K/MATH formats, bad rows, resumable order."""
import json

import pytest

from hybrid_rl.config.task import DataConfig
from hybrid_rl.data.loaders import load_task_samples
from hybrid_rl.data.samples import DataError, PromptStream, Sample
from hybrid_rl.tasks.arithmetic import arithmetic
from hybrid_rl.tasks.gsm8k import gsm8k_reference
from hybrid_rl.tasks.math_solutions import boxed_reference
from hybrid_rl.tasks.plain import plain_row


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_arithmetic_generator_is_correct_and_deterministic():
    a = arithmetic(200, seed=3, min_digits=2, max_digits=3, operations="+-*")
    assert a == arithmetic(200, seed=3, min_digits=2, max_digits=3, operations="+-*")
    for problem, answer, demo in a:
        assert eval(problem.rstrip("=")) == int(answer) == int(demo)  # noqa: S307 (our own digits)
        assert all(
            9 < int(x) < 1000
            for x in problem.rstrip("=").replace("*", "+").replace("-", "+").split("+")
        )


def test_slipped_answers_drop_the_carry_or_borrow():
    from hybrid_rl.tasks.arithmetic import slipped_result

    # by hand: 47+85 writes 2 and forgets the carried 1 (4+8=12 whole): 122, not 132
    assert slipped_result(47, "+", 85) == 122
    assert slipped_result(48, "+", 55) == 93  # 13 -> 3, then 4+5=9
    assert slipped_result(52, "-", 17) == 45  # |2-7|=5, 5-1=4; right: 35
    assert slipped_result(53, "-", 17) == 44
    assert slipped_result(17, "-", 53) == -44  # written as -(53-17)
    assert slipped_result(105, "-", 7) == 102  # |5-7|=2, 0, 1
    # no carry or borrow needed: the slip changes nothing
    assert slipped_result(41, "+", 18) == 59 and slipped_result(86, "-", 24) == 62


def test_slip_rate_changes_demonstrations_only():
    clean = arithmetic(4000, seed=5, min_digits=2, max_digits=2)
    slipped = arithmetic(4000, seed=5, min_digits=2, max_digits=2, slip_rate=0.6)
    # the same problems and gold answers; only demonstrations differ
    assert [t[:2] for t in clean] == [t[:2] for t in slipped]
    wrong = [t for t in slipped if t[1] != t[2]]
    needs_carry = [t for t in clean if _needs_carry_or_borrow(t[0])]
    assert all(_needs_carry_or_borrow(t[0]) for t in wrong)
    assert 0.55 < len(wrong) / len(needs_carry) < 0.65  # 60% of them, within sampling noise
    with pytest.raises(DataError, match="slip_rate"):
        arithmetic(10, seed=0, slip_rate=1.5)
    with pytest.raises(DataError, match=r"\+ and - only"):
        arithmetic(10, seed=0, operations="+*", slip_rate=0.5)


def _needs_carry_or_borrow(problem: str) -> bool:
    op = "+" if "+" in problem else "-"
    a, b = sorted(int(x) for x in problem.rstrip("=").split(op))
    return (a % 10 + b % 10 >= 10) if op == "+" else (b % 10 < a % 10)


def test_generated_heldout_is_disjoint_from_train():
    cfg = DataConfig(num_train=500, num_eval=100, generator_args={"max_digits": 2})
    train, held, _ = load_task_samples(cfg, "math")
    assert len(train) == 500 and len(held) == 100
    assert not {s.prompt for s in held} & {s.prompt for s in train}
    assert all(s.task == "math" and s.reference for s in train)


def test_generator_argument_typo_is_named():
    with pytest.raises(DataError, match="max_digit"):
        load_task_samples(DataConfig(generator_args={"max_digit": 2}), "math")


def test_gsm8k_jsonl_with_eval_file(tmp_path):
    rows = [{"question": f"q{i}?", "answer": f"step\n#### {i},000"} for i in range(5)]
    train = _write_jsonl(tmp_path / "train.jsonl", rows)
    test = _write_jsonl(tmp_path / "test.jsonl", rows[:2])
    cfg = DataConfig(source="jsonl", path=str(train), eval_path=str(test), answer_format="gsm8k",
                     prompt_template="Q: {prompt}\nA:")
    tr, held, _ = load_task_samples(cfg, "gsm8k")
    assert [s.reference for s in tr] == ["0000", "1000", "2000", "3000", "4000"]
    assert tr[1].prompt == "Q: q1?\nA:" and len(held) == 2


def test_math_format_parquet_split_off_heldout(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    solutions = [f"so we get \\boxed{{\\frac{{{i}}}{{2}}}}" for i in range(20)]
    pq.write_table(pa.table({"problem": [f"p{i}" for i in range(20)], "solution": solutions}),
                   tmp_path / "m.parquet")
    cfg = DataConfig(source="parquet", path=str(tmp_path / "m.parquet"), prompt_field="problem",
                     answer_field="solution", answer_format="boxed", eval_fraction=0.25)
    train, held, _ = load_task_samples(cfg, "math_boxed")
    assert len(train) == 15 and len(held) == 5
    assert {s.reference for s in train + held} == {f"\\frac{{{i}}}{{2}}" for i in range(20)}


def test_hf_dataset_from_a_local_folder(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    _write_jsonl(folder / "train.jsonl", [{"question": "1+1", "answer": "#### 2"}] * 3)
    _write_jsonl(folder / "test.jsonl", [{"question": "2+2", "answer": "#### 4"}])
    cfg = DataConfig(source="hf", path=str(folder), split="train", eval_split="test",
                     answer_format="gsm8k")
    train, held, _ = load_task_samples(cfg, "gsm8k")
    assert [s.reference for s in train] == ["2", "2", "2"] and held[0].reference == "4"


@pytest.mark.parametrize(
    "row, problem", [
        ({"question": "q"}, "missing field 'answer'"),
        ({"question": "", "answer": "#### 1"}, "field 'question' must be non-empty text"),
        ({"question": 5, "answer": "#### 1"}, "field 'question' must be non-empty text"),
        ({"question": "q", "answer": "no marker"}, "no '####' marker"),
    ],
)
def test_bad_row_error_names_file_and_row(tmp_path, row, problem):
    good = {"question": "q", "answer": "#### 1"}
    path = _write_jsonl(tmp_path / "d.jsonl", [good, good, row])
    cfg = DataConfig(source="jsonl", path=str(path), answer_format="gsm8k")
    with pytest.raises(DataError) as err:
        load_task_samples(cfg, "gsm8k")
    assert f"{path}, row 3: {problem}" in str(err.value)


def test_bad_rows_can_be_skipped_and_counted(tmp_path):
    rows = [{"question": f"q{i}", "answer": f"#### {i}"} for i in range(10)] + [{"question": "q"}]
    path = _write_jsonl(tmp_path / "d.jsonl", rows)
    cfg = DataConfig(source="jsonl", path=str(path), answer_format="gsm8k", on_bad_row="skip")
    train, held, skipped = load_task_samples(cfg, "gsm8k")
    assert len(train) + len(held) == 10 and len(skipped) == 1 and "row 11" in skipped[0]


def test_unreadable_and_missing_files_are_named(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_task_samples(DataConfig(source="jsonl", path=str(tmp_path / "nope.jsonl")), "t")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "q", "answer": "1"}\n{not json\n')
    with pytest.raises(DataError, match="broken.jsonl: cannot be read as jsonl"):
        load_task_samples(DataConfig(source="jsonl", path=str(broken)), "t")


def test_reference_formats():
    assert gsm8k_reference("a\n#### 1,234") == "1234"
    assert boxed_reference("x \\boxed{\\frac{1}{2}} y") == "\\frac{1}{2}"
    assert plain_row({"q": "1+1", "a": " 7 "}, "f", "q", "a")[1] == "7"


def test_prompt_stream_resumes_exactly_and_reshuffles_per_epoch():
    samples = list(range(7))
    a = PromptStream(samples, seed=1)
    first = a.next(5)
    state = a.state_dict()
    rest = a.next(12)
    b = PromptStream(samples, seed=1)
    b.load_state_dict(state)
    assert b.next(12) == rest
    assert sorted(first + rest[:2]) == samples  # epoch 0 is a permutation
    assert rest[2:9] != first + rest[:2] and sorted(rest[2:9]) == samples  # epoch 1 reshuffled


def test_prompt_stream_refuses_changed_data():
    state = PromptStream(list(range(5)), 0).state_dict()
    with pytest.raises(DataError, match="data changed"):
        PromptStream(list(range(6)), 0).load_state_dict(state)


@pytest.mark.parametrize("change", ["reference", "prompt", "task", "order", "seed"])
def test_prompt_stream_refuses_same_sized_data_that_differs(change):
    def samples(**edit):
        rows = [Sample(f"{i}+{i}=", str(2 * i), "math") for i in range(4)]
        if "order" in edit:
            rows.reverse()
        if edit:
            key = next(iter(edit))
            if key in ("reference", "prompt", "task"):
                setattr(rows[2], key, edit[key])
        return rows

    state = PromptStream(samples(), 0).state_dict()
    PromptStream(samples(), 0).load_state_dict(state)  # the same data resumes
    changed = PromptStream(samples(**{change: "x"}), 1 if change == "seed" else 0)
    with pytest.raises(DataError, match="other training data or another task mixture"):
        changed.load_state_dict(state)
