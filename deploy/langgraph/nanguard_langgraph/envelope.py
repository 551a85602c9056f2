"""The nanguard envelope of a LangGraph checkpoint, as PostgresSaver would
store it: primitive channel values inline in the checkpoint, every other
value as a blob made by the saver's own serializer, and the channels the
checkpoint names without a value as LangGraph's "empty" blobs (so that the
envelope holds every channel of channel_versions, and nanguard can tell a
complete checkpoint from one that lost a channel)."""
import base64
import json

from langgraph.checkpoint.base import (WRITES_IDX_MAP,
                                       get_serializable_checkpoint_metadata)

try:  # delta channels keep a marker inline and their snapshot as a blob
    from langgraph.checkpoint.serde.types import _DeltaSnapshot
except ImportError:  # pragma: no cover
    _DeltaSnapshot = None


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _inline(value):
    return value is None or isinstance(value, (str, int, float, bool))


def checkpoint_envelope(serde, config, checkpoint, metadata):
    """The envelope (a dict) of put(config, checkpoint, metadata, ...)."""
    conf = config["configurable"]
    values = checkpoint["channel_values"]
    versions = checkpoint["channel_versions"]
    inline = {}
    blobs = []
    for k, v in values.items():
        if _DeltaSnapshot is not None and isinstance(v, _DeltaSnapshot):
            inline[k] = True
        elif _inline(v):
            inline[k] = v
            continue
        if k not in versions:
            continue  # PostgresSaver stores no blob without a version
        t, data = serde.dumps_typed(v)
        blobs.append({"channel": k, "version": str(versions[k]), "type": t,
                      "blob": _b64(data)})
    for k, ver in versions.items():
        if k not in values:
            blobs.append({"channel": k, "version": str(ver), "type": "empty",
                          "blob": None})
    body = dict(checkpoint)
    body["channel_values"] = inline
    return {
        "thread_id": conf["thread_id"],
        "checkpoint_ns": conf.get("checkpoint_ns", ""),
        "checkpoint_id": checkpoint["id"],
        "parent_checkpoint_id": conf.get("checkpoint_id"),
        "checkpoint": body,
        "metadata": get_serializable_checkpoint_metadata(config, metadata),
        "blobs": blobs,
    }


def writes_entries(serde, writes, task_id, task_path=""):
    """The `writes` entries of put_writes(config, writes, task_id, ...)."""
    out = []
    for idx, (channel, value) in enumerate(writes):
        t, data = serde.dumps_typed(value)
        out.append({"task_id": task_id, "task_path": task_path,
                    "idx": WRITES_IDX_MAP.get(channel, idx),
                    "channel": channel, "type": t, "blob": _b64(data)})
    return out


def dumps(envelope):
    """The Kafka value: JSON as Python writes it (NaN and Infinity
    included: nanguard repairs them)."""
    return json.dumps(envelope, separators=(",", ":")).encode("utf-8")
