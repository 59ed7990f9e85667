"""The assert -> unit rewrite that gives partial credit (sandbox/units.py), and the settings
checks."""

import pytest

from sandbox import SandboxPool, SandboxSettings, SandboxUnavailable
from sandbox.units import prepare_tests


def test_each_assert_statement_is_one_unit():
    source = ("def check(c):\n    assert c(1) == 2\n    for i in "
              "range(3):\n        assert c(i) > -1, 'msg'\ncheck(f)\n")
    rewritten, units = prepare_tests(source)
    assert units == 2
    assert (
        "assert" not in rewritten
        and "__unit__(0, __unit_ok__)" in rewritten
        and "__unit__(1, __unit_ok__)" in rewritten
    )


def test_unit_records_false_instead_of_raising():
    rewritten, _ = prepare_tests("assert 1 / 0\nassert x == 3\n")
    seen = []
    exec(rewritten, {"__unit__": lambda i, ok: seen.append((i, ok)), "x": 3})
    assert seen == [(0, False), (1, True)]


def test_tests_that_do_not_parse_are_rejected():
    with pytest.raises(ValueError, match="line 1"):
        prepare_tests("assert (\n")


def test_assert_in_a_loop_fails_if_any_run_fails(run):
    tests = "for x in range(4):\n    assert add(x, 0) == x\nassert add(1, 1) == 2\n"
    result = run("def add(a, b):\n    return a + b if a != 3 else 0\n", tests)
    assert (result.status, result.passed_units, result.total_units) == ("fail", 1, 2)


def test_asserts_never_reached_count_as_not_passed(run):
    tests = "assert add(1, 1) == 2\nif add(0, 0) == 1:\n    assert add(2, 2) == 4\n"
    result = run("def add(a, b):\n    return a + b\n", tests)
    assert result.passed and result.fraction == 1.0  # nothing failed: a pass
    wrong = run("def add(a, b):\n    return a + b + 1\n", tests)
    assert (wrong.passed_units, wrong.total_units) == (0, 2)


def test_bad_settings_are_named():
    with pytest.raises(ValueError) as error:
        SandboxPool(SandboxSettings(workers=0, backend="docker"))
    assert "workers: must be > 0, got 0" in str(error.value) and "backend: must be" in str(
        error.value
    )


def test_missing_bubblewrap_refuses_to_run_and_names_the_way_out(monkeypatch):
    import sandbox.launch

    monkeypatch.setattr(sandbox.launch.shutil, "which", lambda name: None)
    with pytest.raises(SandboxUnavailable, match="apt-get install "
                                                 "bubblewrap.*sandbox.backend=unsafe_local"):
        SandboxPool(SandboxSettings(workers=1))


def test_unsafe_backend_runs_only_when_chosen_and_warns_in_the_log_every_time(caplog):
    from sandbox import Job

    for _ in range(2):  # a second pool in the same process warns again
        caplog.clear()
        with SandboxPool(SandboxSettings(workers=1, backend="unsafe_local")) as pool:
            result = pool.run(Job("def f():\n    return 2\n", "assert f() == 2\nassert f() == 3\n"))
        assert (result.status, result.passed_units) == ("fail", 1)
        assert [r.name for r in caplog.records if "WITHOUT isolation" in r.message] == [
            "hybrid_rl.sandbox"
        ]


def test_sandboxes_die_with_a_killed_trainer():
    from helpers.runs import children_of_a_killed_parent, processes_gone

    sandboxes = children_of_a_killed_parent(
        "from sandbox import SandboxPool, SandboxSettings\npool = "
        "SandboxPool(SandboxSettings(workers=2))",
        "(w.proc.pid for w in pool._workers if w.proc)",
    )
    assert sandboxes and processes_gone(sandboxes) == []
