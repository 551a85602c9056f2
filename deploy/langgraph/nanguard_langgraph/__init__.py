"""nanguard's LangGraph checkpointer (see the README's "LangGraph")."""
from .envelope import checkpoint_envelope, dumps, writes_entries
from .saver import NanguardFlushError, NanguardSaver

__all__ = ["NanguardSaver", "NanguardFlushError", "checkpoint_envelope",
           "writes_entries", "dumps"]
