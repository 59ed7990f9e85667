"""Read an offline W&B run (run-<id>.wandb) without a server: the file is a log of protobuf
records in W&B's LevelDB-style framing (a 7-byte file header, then 32 KiB blocks of records,
each with a 7-byte header: checksum, length, and whether it is whole or a fragment)."""
import json
import struct
from pathlib import Path

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def raw_records(path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # block padding
            pos += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
        else:  # zero padding at a block's end
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0


def read_run(path) -> dict:
    """{"run": RunRecord, "history": [{key: value}], "config": {key: value},
    "summary": {key: value}, "files": [paths]} of one offline run file."""
    from wandb.proto import wandb_internal_pb2 as pb

    out = {"run": None, "history": [], "config": {}, "summary": {}, "files": []}
    for raw in raw_records(path):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":  # it carries the config given to wandb.init
            out["run"] = record.run
            out["config"].update({item.key or "/".join(item.nested_key):
                                  json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "history":
            out["history"].append({item.key or "/".join(item.nested_key):
                                   json.loads(item.value_json) for item in record.history.item})
        elif kind == "config":
            out["config"].update({item.key or "/".join(item.nested_key):
                                  json.loads(item.value_json) for item in record.config.update})
        elif kind == "summary":
            out["summary"].update({item.key or "/".join(item.nested_key):
                                   json.loads(item.value_json) for item in record.summary.update})
        elif kind == "files":
            out["files"].extend(f.path for f in record.files.files)
    return out
