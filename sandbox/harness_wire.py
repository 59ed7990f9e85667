"""Framing and plain-data decoding inside the sandbox (standard library only; shipped next to
harness.py). Wire format, both directions: 4-byte big-endian length, then a marshal payload.

Anything the program sends is checked *before* it is built: `plain_loads` walks the marshal
bytes and accepts only the codes of exact built-in plain types (int, float, complex, str,
bytes, bool, None, tuple, list, dict, set, frozenset), no back-references (so no shared or
self-referencing structure whose traversal explodes), at most `max_items` values and `max_depth`
levels. A count field is only believed when the items are actually there, so a 9-byte frame
cannot make the judge allocate gigabytes.
"""
import marshal
import os
import select
import time

MAX_FRAME = 64 << 20
MAX_ITEMS = 1_000_000
MAX_DEPTH = 100
FLAG_REF = 0x80
SCALARS = {ord("N"): 0, ord("F"): 0, ord("T"): 0, ord("i"): 4, ord("g"): 8, ord("y"): 16}
SIZED = {ord(c): 4 for c in "suatA"} | {ord(c): 1 for c in "zZ"}  # length field, then bytes
SEQUENCES = {ord(c): 4 for c in "([<>"} | {ord(")"): 1}  # count field, then the items


class Deadline(BaseException):
    """The job's time is up (BaseException, so tests' `except Exception` cannot swallow it)."""


class NotPlain(ValueError):
    """Bytes from the program that are not a small plain value."""


def read_exact(fd, size, deadline=None):
    chunks, left = [], size
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise Deadline()
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_payload(fd, deadline=None):
    size = int.from_bytes(read_exact(fd, 4, deadline), "big")
    if size > MAX_FRAME:
        raise NotPlain(f"frame of {size} bytes exceeds the {MAX_FRAME}-byte limit")
    return read_exact(fd, size, deadline)


def read_frame(fd, deadline=None):
    """A trusted frame (from the host or the judge)."""
    return marshal.loads(read_payload(fd, deadline))


def write_frame(fd, obj, version=marshal.version):
    """`version` 2 for what the program sends: marshal without back-references."""
    data = marshal.dumps(obj, version)
    view = memoryview(len(data).to_bytes(4, "big") + data)
    while view:
        view = view[os.write(fd, view):]


def plain_loads(data, max_items=MAX_ITEMS, max_depth=MAX_DEPTH):
    """marshal.loads of `data` once `check_plain_bytes` accepted it."""
    check_plain_bytes(data, max_items, max_depth)
    return marshal.loads(data)


def check_plain_bytes(data, max_items=MAX_ITEMS, max_depth=MAX_DEPTH):
    """Raise NotPlain unless `data` is exactly one marshalled plain value within the bounds."""
    pos, items = 0, 0
    pending = [1]  # values still to read at each open level (-1: dict entries until '0')
    while pending:
        if pending[-1] == 0:
            pending.pop()
            continue
        if pos >= len(data):
            raise NotPlain("truncated value")
        code = data[pos]
        pos += 1
        if code & FLAG_REF or code == ord("r"):
            raise NotPlain("shared or self-referencing values are not accepted")
        if code == ord("0"):  # the end of a dict
            if pending[-1] != -1:
                raise NotPlain("misplaced dict end")
            pending.pop()
            continue
        if pending[-1] > 0:
            pending[-1] -= 1
        items += 1
        if items > max_items:
            raise NotPlain(f"more than {max_items} values")
        pos = _skip_one(data, pos, code, pending, max_depth)
    if pos != len(data):
        raise NotPlain("trailing bytes after the value")


def _skip_one(data, pos, code, pending, max_depth):
    """Advance past one value's own bytes; open a level for a container."""
    if code in SCALARS:
        return pos + SCALARS[code]
    if code == ord("l"):  # long: a signed digit count, then 2 bytes per digit
        digits = abs(int.from_bytes(data[pos:pos + 4], "little", signed=True))
        return _within(data, pos + 4 + 2 * digits)
    if code in SIZED:
        width = SIZED[code]
        return _within(data, pos + width + int.from_bytes(data[pos:pos + width], "little"))
    if code in SEQUENCES or code == ord("{"):
        if len(pending) > max_depth:
            raise NotPlain(f"nested deeper than {max_depth} levels")
        if code == ord("{"):
            pending.append(-1)
            return pos
        width = SEQUENCES[code]
        pending.append(int.from_bytes(data[pos:pos + width], "little", signed=width == 4))
        if pending[-1] < 0:
            raise NotPlain("negative count")
        return _within(data, pos + width)
    raise NotPlain(f"type code {chr(code)!r} is not plain data")


def _within(data, end):
    if end > len(data):
        raise NotPlain("a length runs past the end of the value")
    return end
