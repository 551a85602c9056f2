"""NanguardSaver: a LangGraph checkpointer whose writes go to Kafka (for
nanguard's workers to store in PostgreSQL) and whose reads are LangGraph's
own PostgresSaver queries on that PostgreSQL."""
import asyncio
import threading
from collections import OrderedDict

from confluent_kafka import Producer
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg import Connection
from psycopg.rows import dict_row

from .envelope import checkpoint_envelope, dumps, writes_entries


class NanguardFlushError(RuntimeError):
    """Some envelopes were not acknowledged by the broker."""


class NanguardSaver(BaseCheckpointSaver):
    """put and put_writes produce envelopes (keyed by thread id, so one
    thread's checkpoints stay in order on one partition) without waiting
    for PostgreSQL; get_tuple and list read PostgreSQL as PostgresSaver
    does. Each put_writes envelope carries its checkpoint again (stored
    once: the row is already there) so that every envelope is whole.

    PostgreSQL lags behind Kafka, so the newest checkpoint this saver put
    for a thread (and its writes) is also kept in memory and served by
    get_tuple: a graph goes on from its own last step even before the
    workers stored it. list() reads PostgreSQL only (what is stored so
    far). One writer per thread, as with any LangGraph checkpointer.

    NanguardSaver(bootstrap_servers=..., topic=..., conninfo=...,
    producer_config={...}); flush(timeout) waits for the broker."""

    def __init__(self, bootstrap_servers, topic, conninfo, *, serde=None,
                 producer_config=None):
        self._reader = PostgresSaver(
            Connection.connect(conninfo, autocommit=True, prepare_threshold=0,
                               row_factory=dict_row))
        super().__init__(serde=serde or self._reader.serde)
        self._reader.serde = self.serde
        conf = {"bootstrap.servers": bootstrap_servers, "acks": "all",
                "enable.idempotence": True, "linger.ms": 5}
        conf.update(producer_config or {})
        self._producer = Producer(conf)
        self._topic = topic
        self._lock = threading.Condition()
        # (thread_id, ns) -> OrderedDict(checkpoint_id -> envelope), the
        # newest few, for the put_writes envelopes
        self._last = {}
        self._cache = InMemorySaver(serde=self.serde)
        # (thread_id, ns) -> the checkpoint id get_tuple last read from
        # PostgreSQL (its writes need not wait for a put)
        self._from_store = {}
        self._errors = []

    # ---- writing --------------------------------------------------------

    def _delivered(self, err, msg):
        if err is not None:
            self._errors.append(str(err))

    def _produce(self, envelope):
        key = envelope["thread_id"].encode("utf-8")
        value = dumps(envelope)
        while True:
            try:
                self._producer.produce(self._topic, value=value, key=key,
                                       on_delivery=self._delivered)
                break
            except BufferError:  # the local queue is full: let it drain
                self._producer.poll(0.1)
        self._producer.poll(0)

    def put(self, config, checkpoint, metadata, new_versions):
        env = checkpoint_envelope(self.serde, config, checkpoint, metadata)
        key = (env["thread_id"], env["checkpoint_ns"])
        with self._lock:
            recent = self._last.setdefault(key, OrderedDict())
            recent[env["checkpoint_id"]] = env
            while len(recent) > 4:
                recent.popitem(last=False)
            self._cache.put(config, checkpoint, metadata, new_versions)
            self._prune(key, env["checkpoint_id"],
                        checkpoint["channel_versions"])
            self._lock.notify_all()
        self._produce(env)
        return {"configurable": {"thread_id": env["thread_id"],
                                 "checkpoint_ns": env["checkpoint_ns"],
                                 "checkpoint_id": env["checkpoint_id"]}}

    def put_writes(self, config, writes, task_id, task_path=""):
        conf = config["configurable"]
        key = (conf["thread_id"], conf.get("checkpoint_ns", ""))
        cid = conf["checkpoint_id"]
        with self._lock:
            # LangGraph may call put_writes for a checkpoint while its put
            # still runs on another thread: wait for it a little.
            if self._from_store.get(key) != cid:
                self._lock.wait_for(
                    lambda: cid in self._last.get(key, {}), timeout=10)
            env = self._last.get(key, {}).get(cid)
            self._cache.put_writes(config, writes, task_id, task_path)
        if env is None:
            env = self._envelope_from_store(config)
        env = dict(env)
        env["writes"] = writes_entries(self.serde, writes, task_id, task_path)
        self._produce(env)

    def _prune(self, key, keep, versions):
        """Keeps only the newest checkpoint of a thread in the cache."""
        thread, ns = key
        stored = self._cache.storage.get(thread, {}).get(ns, {})
        for cid in [c for c in stored if c != keep]:
            del stored[cid]
            self._cache.writes.pop((thread, ns, cid), None)
        for k in [k for k in self._cache.blobs
                  if k[0] == thread and k[1] == ns and
                  versions.get(k[2]) != k[3]]:
            del self._cache.blobs[k]

    def _envelope_from_store(self, config):
        t = self._reader.get_tuple(config)
        if t is None:
            raise KeyError("checkpoint %s is neither in this saver's memory "
                           "nor in PostgreSQL" % config["configurable"])
        conf = dict(t.config["configurable"])
        parent = t.parent_config["configurable"]["checkpoint_id"] \
            if t.parent_config else None
        conf["checkpoint_id"] = parent
        return checkpoint_envelope(self.serde, {"configurable": conf},
                                   t.checkpoint, t.metadata)

    def flush(self, timeout=30.0):
        """Waits until the broker acknowledged every envelope; raises
        NanguardFlushError when some were not (in time or at all)."""
        left = self._producer.flush(timeout)
        errors, self._errors = self._errors, []
        if left or errors:
            raise NanguardFlushError("%d envelope(s) not acknowledged%s" % (
                left + len(errors), ": " + errors[0] if errors else ""))

    def get_next_version(self, current, channel):
        return self._reader.get_next_version(current, channel)

    # ---- reading: LangGraph's own queries --------------------------------

    def get_tuple(self, config):
        with self._lock:
            t = self._cache.get_tuple(config)
        if t is not None:
            return t
        t = self._reader.get_tuple(config)
        if t is not None:
            c = t.config["configurable"]
            with self._lock:
                self._from_store[(c["thread_id"], c.get("checkpoint_ns", ""))] \
                    = c["checkpoint_id"]
        return t

    def list(self, config, *, filter=None, before=None, limit=None):
        return self._reader.list(config, filter=filter, before=before,
                                 limit=limit)

    def delete_thread(self, thread_id):
        raise NotImplementedError(
            "NanguardSaver writes through Kafka; delete in PostgreSQL")

    # ---- async: the same calls, off the event loop's thread -------------

    async def aput(self, config, checkpoint, metadata, new_versions):
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config, writes, task_id, task_path=""):
        return self.put_writes(config, writes, task_id, task_path)

    async def aget_tuple(self, config):
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(self, config, *, filter=None, before=None, limit=None):
        items = await asyncio.to_thread(
            lambda: list(self.list(config, filter=filter, before=before,
                                   limit=limit)))
        for t in items:
            yield t

    async def aflush(self, timeout=30.0):
        await asyncio.to_thread(self.flush, timeout)

    def close(self):
        self._producer.flush(10)
        self._reader.conn.close()
