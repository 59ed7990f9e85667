"""Turn each `assert` of trusted test code into a counted unit that never stops the tests.

`assert cond, msg` becomes

    try:
        __unit_ok__ = cond
    except Exception:
        __unit_ok__ = False
    __unit__(k, __unit_ok__)

so the judge learns which asserts held (partial credit) while the test code still runs to its
end. The truth of the value is taken inside `__unit__`, with the judge's own `bool`: no name
in the test namespace decides it. Runs on the host, so the program never sees the rewritten
tests either.
"""
from __future__ import annotations

import ast
from functools import lru_cache

_TEMPLATE = """
try:
    __unit_ok__ = COND
except Exception:
    __unit_ok__ = False
__unit__(INDEX, __unit_ok__)
"""


class _AssertToUnit(ast.NodeTransformer):
    def __init__(self):
        self.count = 0

    def visit_Assert(self, node: ast.Assert):
        body = ast.parse(_TEMPLATE).body
        body[0].body[0].value = node.test
        body[1].value.args[0] = ast.Constant(self.count)
        self.count += 1
        for stmt in body:
            ast.copy_location(stmt, node)
        return body


@lru_cache(maxsize=4096)
def prepare_tests(source: str) -> tuple[str, int]:
    """(rewritten source, number of asserts). Raises ValueError if the tests do not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ValueError(f"the tests are not valid Python: line {exc.lineno}: {exc.msg}") from None
    rewriter = _AssertToUnit()
    tree = ast.fix_missing_locations(rewriter.visit(tree))
    return ast.unparse(tree), rewriter.count
