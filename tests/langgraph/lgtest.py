"""lgtest.py - what the LangGraph tests share: a small graph whose state
holds messages, dicts and non-finite floats, a recording checkpointer that
makes nanguard envelopes as NanguardSaver does, and comparisons of
LangGraph's state snapshots with NaN and Infinity read as None.

Runs in the virtual environment of deploy/langgraph/venv.sh."""
import math
import os
import sys
import threading
from typing import Annotated, TypedDict

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "sink"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..",
                                "deploy", "langgraph"))

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.graph.message import add_messages  # noqa: E402

from nanguard_langgraph import checkpoint_envelope, writes_entries  # noqa: E402


class State(TypedDict, total=False):
    count: int
    score: float
    note: str
    messages: Annotated[list[AnyMessage], add_messages]
    data: dict


def make_graph(nan=True):
    """Two nodes. With nan, the state's inline score gets float('nan') and
    float('inf'); without, None (what nanguard stores for them, and what
    PostgresSaver alone can store: it refuses NaN). Inside the dict (a
    msgpack blob, not JSON) Infinity is kept either way."""
    bad = float("nan") if nan else None
    big = float("inf") if nan else None

    def think(s):
        n = s.get("count", 0)
        return {"count": n + 1, "score": bad,
                "messages": [AIMessage("thought %d" % n, id="ai-%d" % n)],
                "data": {"bound": float("inf"), "n": n, "tags": ["a", "b"]}}

    def note(s):
        return {"note": "note %d" % s["count"], "score": big}

    g = StateGraph(State)
    g.add_node("think", think)
    g.add_node("note", note)
    g.add_edge(START, "think")
    g.add_edge("think", "note")
    g.add_edge("note", END)
    return g


def human(text, i):
    return {"messages": [HumanMessage(text, id="h-%s" % i)]}


class RecordingSaver(InMemorySaver):
    """InMemorySaver that also makes the envelopes NanguardSaver would
    send, in the order it would send them."""

    def __init__(self):
        super().__init__()
        self.envelopes = []
        self._last = {}
        self._seen = threading.Condition()

    def put(self, config, checkpoint, metadata, new_versions):
        env = checkpoint_envelope(self.serde, config, checkpoint, metadata)
        with self._seen:
            self._last[env["checkpoint_id"]] = env
            self.envelopes.append(env)
            self._seen.notify_all()
        return super().put(config, checkpoint, metadata, new_versions)

    def put_writes(self, config, writes, task_id, task_path=""):
        # With LangGraph's default durability ("async") the put of a
        # checkpoint and the put_writes of its tasks run on the executor's
        # threads, in either order: wait for the put, as NanguardSaver does.
        cid = config["configurable"]["checkpoint_id"]
        with self._seen:
            if not self._seen.wait_for(lambda: cid in self._last, timeout=30):
                raise RuntimeError("put_writes for checkpoint %s, never put"
                                   % cid)
            env = dict(self._last[cid])
            env["writes"] = writes_entries(self.serde, writes, task_id,
                                           task_path)
            self.envelopes.append(env)
        return super().put_writes(config, writes, task_id, task_path)


def norm(v):
    """A comparable form: non-finite floats as None, messages as tuples."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, BaseMessage):
        return ("msg", v.type, norm(v.content), v.id)
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    return v


def snap(s):
    """A StateSnapshot as a comparable dict."""
    return {
        "values": norm(s.values),
        "next": list(s.next),
        "config": s.config,
        "metadata": norm(s.metadata),
        "created_at": s.created_at,
        "parent_config": s.parent_config,
        "tasks": [(t.id, t.name, list(t.path), t.error, norm(t.result))
                  for t in s.tasks],
    }


def has_nonfinite(v):
    if isinstance(v, float):
        return not math.isfinite(v)
    if isinstance(v, dict):
        return any(has_nonfinite(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return any(has_nonfinite(x) for x in v)
    return False


def shape(s, ids):
    """A snapshot with its checkpoint ids as positions in ids (a list that
    grows) and without timestamps: two runs of the same graph compare
    equal."""
    def pos(cfg):
        if not cfg:
            return None
        cid = cfg["configurable"]["checkpoint_id"]
        if cid not in ids:
            ids.append(cid)
        return ids.index(cid)
    return {
        "values": norm(s.values),
        "next": list(s.next),
        "metadata": norm(s.metadata),
        "at": pos(s.config),
        "parent": pos(s.parent_config),
        "tasks": [(t.name, list(t.path), t.error, norm(t.result))
                  for t in s.tasks],
    }
