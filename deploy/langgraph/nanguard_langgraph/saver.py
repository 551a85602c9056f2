"""NanguardSaver: a LangGraph checkpointer whose writes go to Kafka (for
nanguard's workers to store in PostgreSQL) and whose reads are LangGraph's
own PostgresSaver queries on that PostgreSQL."""
import asyncio
import threading

from confluent_kafka import Producer
from langgraph.checkpoint.base import BaseCheckpointSaver
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
        self._lock = threading.Lock()
        self._last = {}  # (thread_id, ns) -> (checkpoint_id, envelope)
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
        with self._lock:
            self._last[(env["thread_id"], env["checkpoint_ns"])] = (
                env["checkpoint_id"], env)
        self._produce(env)
        return {"configurable": {"thread_id": env["thread_id"],
                                 "checkpoint_ns": env["checkpoint_ns"],
                                 "checkpoint_id": env["checkpoint_id"]}}

    def put_writes(self, config, writes, task_id, task_path=""):
        conf = config["configurable"]
        key = (conf["thread_id"], conf.get("checkpoint_ns", ""))
        with self._lock:
            cid, env = self._last.get(key, (None, None))
        if cid != conf["checkpoint_id"]:
            env = self._envelope_from_store(config)
        env = dict(env)
        env["writes"] = writes_entries(self.serde, writes, task_id, task_path)
        self._produce(env)

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
        t = self._reader.get_tuple(config)
        if t is not None:
            c = t.config["configurable"]
            key = (c["thread_id"], c.get("checkpoint_ns", ""))
            with self._lock:
                if key not in self._last or \
                        self._last[key][0] != c["checkpoint_id"]:
                    self._last.pop(key, None)
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
