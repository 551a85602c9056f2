#!/usr/bin/env python3
"""envelope.py - checkpoint envelopes (NDJSON) as Kafka records for kcat -K TAB.

    envelope.py raw CORPUS        thread_id TAB the line as it is
    envelope.py connect CORPUS    thread_id TAB the same envelope in Kafka
                                  Connect's JsonConverter schema envelope

The Debezium JDBC sink needs a schema with each record (schemas.enable=true):
a struct of the table's columns, `checkpoint` and `metadata` as strings of
the semantic type io.debezium.data.Json, which the sink writes into jsonb.
Their text is the line's own (re-serialized with json.dumps' defaults, as
the corpus generator writes it, so the bytes are the same). Prints the bytes
of the values written to standard error: `values BYTES`.
"""
import json
import sys

SCHEMA = {
    "type": "struct",
    "name": "nanguard.checkpoint",
    "optional": False,
    "fields": [
        {"field": "thread_id", "type": "string", "optional": False},
        {"field": "checkpoint_ns", "type": "string", "optional": False},
        {"field": "checkpoint_id", "type": "string", "optional": False},
        {"field": "parent_checkpoint_id", "type": "string", "optional": True},
        {"field": "type", "type": "string", "optional": True},
        {"field": "checkpoint", "type": "string", "optional": False,
         "name": "io.debezium.data.Json"},
        {"field": "metadata", "type": "string", "optional": False,
         "name": "io.debezium.data.Json"},
    ],
}


def connect_value(line):
    e = json.loads(line)
    payload = {
        "thread_id": e["thread_id"],
        "checkpoint_ns": e.get("checkpoint_ns", ""),
        "checkpoint_id": e["checkpoint_id"],
        "parent_checkpoint_id": e.get("parent_checkpoint_id"),
        "type": e.get("type"),
        # allow_nan (json.dumps' default) keeps a NaN as the producer wrote it
        "checkpoint": json.dumps(e["checkpoint"]),
        "metadata": json.dumps(e.get("metadata", {})),
    }
    return json.dumps({"schema": SCHEMA, "payload": payload})


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("raw", "connect"):
        sys.exit("usage: envelope.py raw|connect CORPUS")
    total = 0
    out = sys.stdout
    with open(sys.argv[2], encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            value = line if sys.argv[1] == "raw" else connect_value(line)
            key = json.loads(line)["thread_id"]
            out.write(key + "\t" + value + "\n")
            total += len(value.encode("utf-8"))
    print("values %d" % total, file=sys.stderr)


if __name__ == "__main__":
    main()
