#!/usr/bin/env python3
"""gen_checkpoints.py - nanguard's own deterministic test corpus.

Writes newline-delimited JSON, one LangGraph-like checkpoint envelope per
line, serialized exactly as a Python producer would: json.dumps with its
defaults (allow_nan=True, so non-finite floats come out as the bare tokens
NaN, Infinity and -Infinity that PostgreSQL jsonb refuses).

Python 3 stdlib only. The same arguments on the same Python minor version
give the same bytes.

    python3 gen_checkpoints.py --count 10000 --avg-bytes 3000 \\
        --nan-rate 0.05 --seed 7 --ensure-ascii mixed --out corpus.ndjson

Options:
  --count N           number of messages (lines); default 1000
  --total-bytes B     instead of --count: stop once B bytes are written
  --avg-bytes B       mean size of a message (each is drawn in [0.5B, 1.5B];
                      the skeleton and one chat message make a floor of
                      about 2 KB, so means below about 3500 come out high)
  --nan-rate R        fraction of floats that become NaN / Infinity /
                      -Infinity (weights 3:1:1); default 0.01
  --bad-rate R        fraction of messages that also carry string values
                      jsonb refuses: \\u0000, lone surrogate escapes, and
                      with --ensure-ascii 0 raw invalid UTF-8 bytes. Default
                      0: the repaired corpus then loads into jsonb as is.
  --seed S            random seed; default 1
  --ensure-ascii M    1 (json.dumps default: non-ASCII as \\uXXXX escapes,
                      surrogate pairs for astral characters), 0 (raw UTF-8),
                      or "mixed" (drawn per message); default 1
  --out PATH          output file; default standard output

What every corpus exercises, besides the envelope's shape: strings holding
the words NaN, Infinity and -Infinity next to escaped quotes and
backslashes; object keys named "NaN", "Infinity", "-Infinity", "", "a/b",
"m~n" (floats under them, so JSON Pointers need escaping); Greek,
Cyrillic, CJK, Arabic and emoji text (astral, so surrogate pairs with
ensure_ascii); control characters json.dumps escapes (\\t, \\n, \\u0001,
\\u001f) and ones it does not (DEL, U+2028); U+FFFD itself; floats tiny,
huge, negative, subnormal, -0.0, 1.7976931348623157e+308; integers beyond
64 bits.

A summary goes to standard error.
"""
import argparse
import codecs
import json
import random
import sys

NAN = float("nan")
INF = float("inf")


def _raw_bytes_handler(exc):
    """Encoding error handler for --ensure-ascii 0 with --bad-rate: a lone
    surrogate U+DC80..U+DCFF becomes the byte it stands for (as with
    surrogateescape), any other lone surrogate its 3-byte encoding (as with
    surrogatepass). Both are invalid UTF-8 on purpose."""
    out = bytearray()
    for ch in exc.object[exc.start:exc.end]:
        cp = ord(ch)
        if 0xDC80 <= cp <= 0xDCFF:
            out.append(cp - 0xDC00)
        elif 0xD800 <= cp <= 0xDFFF:
            out += bytes((0xE0 | cp >> 12, 0x80 | (cp >> 6) & 0x3F, 0x80 | cp & 0x3F))
        else:
            raise exc
    return bytes(out), exc.end


codecs.register_error("nanguard_rawbytes", _raw_bytes_handler)

# --- vocabulary --------------------------------------------------------------

PHRASES = [
    "Please look up the nearest depots and rank them by travel time.",
    "I found 3 candidates; the second one has no score (it came back NaN).",
    "The optimiser diverged: loss=NaN, grad_norm=Infinity, lr=3e-4.",
    "Bounds are (-Infinity, Infinity) unless the user sets them.",
    'The tool printed {"mean": NaN, "max": Infinity, "min": -Infinity}.',
    'She typed \\"NaN\\" literally, then a backslash: \\',
    'quote-NaN: "NaN" / quote-inf: "-Infinity" / escaped: \\"Infinity\\"',
    "path C:\\data\\NaN\\Infinity\\ and a trailing backslash \\",
    "\u0391\u03c5\u03c4\u03cc \u03b5\u03af\u03bd\u03b1\u03b9 \u03ad\u03bd\u03b1 "
    "\u03b4\u03bf\u03ba\u03b9\u03bc\u03b1\u03c3\u03c4\u03b9\u03ba\u03cc "
    "\u03ba\u03b5\u03af\u03bc\u03b5\u03bd\u03bf (\u03c0 \u2248 3.14159).",
    "\u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439\u0442\u0435, "
    "\u044d\u0442\u043e \u0442\u0435\u0441\u0442 NaN.",
    "\u6a21\u578b\u8fd4\u56de\u4e86 NaN\uff0c\u8bf7\u91cd\u8bd5\u3002"
    "\u68c0\u67e5\u70b9\u5df2\u4fdd\u5b58\u3002",
    "\u30c1\u30a7\u30c3\u30af\u30dd\u30a4\u30f3\u30c8 Infinity "
    "\u3092\u691c\u51fa\u3057\u307e\u3057\u305f",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8 -Infinity",
    "\u0627\u0644\u0642\u064a\u0645\u0629 \u063a\u064a\u0631 "
    "\u0645\u0639\u0631\u0641\u0629 NaN",
    "emoji \U0001F600\U0001F9EE\U0001F4C8 rocket \U0001F680 "
    "family \U0001F468\u200d\U0001F469\u200d\U0001F467 flag \U0001F1EF\U0001F1F5",
    "math \U0001D4D7\U0001D4EA\U0001D4DD \u221e \u2212\u221e \u2260 NaN",
    "columns\tseparated\tby\ttabs\nand a second line\r\nwindows line",
    "control chars: \x01 \x02 \x1f bell-less, DEL \x7f, LS \u2028 PS \u2029",
    "replacement char \ufffd already here, BOM \ufeff in the middle",
    "SELECT doc->'checkpoint'->>'ts' FROM ckpt WHERE doc @> '{\"type\": \"NaN\"}';",
    "ends with the word NaN",
    "Infinity",
    "-Infinity",
    "NaN",
    "",
]

WORDS = (
    "agent tool node edge graph state channel version checkpoint thread "
    "neighbor bounding box embedding score recall latency tokens NaN "
    "Infinity -Infinity nan inf +NaN -NaN null true false "
    "caf\u00e9 na\u00efve \u03b1\u03b2\u03b3 \u4e16\u754c \u043c\u0438\u0440 "
    "\U0001F600 \U0001F9EA \u221e x\"NaN\" \\NaN\\ \"Infinity\\\" "
    "a\\\"NaN q\" b\\"
).split(" ")

# String values jsonb refuses (only with --bad-rate). A U+DC80..U+DCFF
# character stands for one raw byte when --ensure-ascii 0.
BAD_FRAGMENTS = [
    "\x00", "a\x00b", "NaN\x00", "\x00\x00",
    "\ud800", "\udc00", "\ud800x", "\udbff", "\udfff",
    "\ud800\U0001F600", "\ude00\ud83d", "\ud83d\n", "\ud83d\\",
    "\ud800\x00", "\ud83d\"",
    "\udcff", "\udce2\udc82", "\udce2\udc82x", "\udcc0\udcaf",
    "\udced\udca0\udc80", "\udcf4\udc90\udc80\udc80", "\udcf0\udc9f\udc98",
    "\udc80", "\udcfe\udcfe",
]

TOOLS = ["geo_search", "rank_candidates", "sql_query", "python", "fetch_url",
         "vector_lookup"]
MODELS = ["gpt-4o-mini", "claude-3-haiku", "mistral-large", "qwen2-72b"]
ROLES = [("HumanMessage", "human"), ("AIMessage", "ai"), ("AIMessage", "ai"),
         ("ToolMessage", "tool"), ("SystemMessage", "system")]
NODES = ["__start__", "agent", "tools", "planner", "critic"]

# Floats worth having byte for byte.
SPECIAL_FLOATS = [
    -0.0, 0.0, 1.0, -1.0, 5e-324, -5e-324, 2.2250738585072014e-308,
    1.7976931348623157e308, -1.7976931348623157e308, 1e16, 1e22, 1e-7,
    0.1, 123456789012345680.0, 9007199254740993.0, 1e300, -1e-300,
]
SPECIAL_INTS = [0, -1, 2**31, -2**31 - 1, 2**53 + 1, 2**63 - 1, -2**63,
                2**64, 2**64 + 1, 10**30, -(10**40) - 7]


class Corpus:
    def __init__(self, seed, nan_rate, bad_rate):
        self.r = random.Random(seed)
        self.nan_rate = nan_rate
        self.bad_rate = bad_rate
        self.floats = 0
        self.nonfinite = 0
        self.bad_strings = 0

    # --- numbers ---------------------------------------------------------
    def _nonfinite(self):
        self.nonfinite += 1
        x = self.r.random()
        return NAN if x < 0.6 else INF if x < 0.8 else -INF

    def num(self):
        """One float of a mixed distribution, or a non-finite one."""
        r = self.r
        self.floats += 1
        x = r.random()
        if x < self.nan_rate:
            return self._nonfinite()
        x = r.random()
        if x < 0.80:
            return r.gauss(0.0, 1.0)
        if x < 0.88:
            return r.gauss(0.0, 1.0) * 10.0 ** r.randint(-300, -5)
        if x < 0.94:
            return r.gauss(0.0, 1.0) * 10.0 ** r.randint(5, 300)
        if x < 0.97:
            return float(r.randint(-5000, 5000))
        return r.choice(SPECIAL_FLOATS)

    def vector(self, n):
        """n floats, fast: the common case in one comprehension."""
        r = self.r
        g = r.gauss
        rnd = r.random
        rate = self.nan_rate
        out = [g(0.0, 1.0) for _ in range(n)]
        self.floats += n
        if rate > 0:
            for i in range(n):
                if rnd() < rate:
                    out[i] = self._nonfinite()
        # A few odd ones in most vectors.
        for _ in range(r.randint(0, 2) if n >= 8 else 0):
            i = r.randrange(n)
            if out[i] == out[i] and abs(out[i]) != INF:
                out[i] = r.choice(SPECIAL_FLOATS)
        return out

    def unit(self):
        self.floats += 1
        if self.r.random() < self.nan_rate:
            return self._nonfinite()
        return self.r.random()

    def integer(self):
        r = self.r
        x = r.random()
        if x < 0.9:
            return r.randint(-100000, 100000)
        return r.choice(SPECIAL_INTS)

    # --- text ------------------------------------------------------------
    def uuid(self, version=4):
        h = "%032x" % self.r.getrandbits(128)
        return "%s-%s-%d%s-%s-%s" % (h[:8], h[8:12], version, h[13:16],
                                      h[16:20], h[20:])

    def text(self, approx):
        r = self.r
        parts = []
        n = 0
        while n < approx:
            if r.random() < 0.25:
                s = r.choice(PHRASES)
            else:
                s = " ".join([r.choice(WORDS) for _ in range(r.randint(2, 14))])
            parts.append(s)
            n += len(s) + 1
        return " ".join(parts)

    def bad(self):
        """A string value with something jsonb refuses in it."""
        r = self.r
        self.bad_strings += 1
        frag = r.choice(BAD_FRAGMENTS)
        where = r.random()
        words = " ".join([r.choice(WORDS) for _ in range(r.randint(0, 4))])
        if where < 0.3:
            return frag + words
        if where < 0.6:
            return words + frag
        return words + frag + " " + r.choice(PHRASES)

    # --- langchain messages ----------------------------------------------
    def message(self, size):
        r = self.r
        cls, role = r.choice(ROLES)
        small = size < 400
        kw = {"content": self.text(size), "additional_kwargs": {},
              "response_metadata": {}, "type": role, "name": None,
              "id": self.uuid()}
        if cls == "AIMessage":
            kw["response_metadata"] = {
                "token_usage": {"completion_tokens": self.integer(),
                                "prompt_tokens": r.randint(1, 9000),
                                "total_tokens": r.randint(1, 12000)},
                "model_name": r.choice(MODELS),
                "finish_reason": r.choice(["stop", "tool_calls", "length"]),
                "logprobs": {"content": [
                    {"token": r.choice(WORDS), "logprob": self.num()}
                    for _ in range(0 if small else r.randint(0, 4))]},
                "temperature": self.unit(),
            }
            kw["tool_calls"] = [{
                "name": r.choice(TOOLS),
                "args": {"query": self.text(30), "k": r.randint(1, 20),
                         "radius_km": self.num(), "NaN": "skip",
                         "Infinity": self.unit()},
                "id": "call_" + "%020x" % r.getrandbits(80),
                "type": "tool_call"} for _ in range(r.randint(0, 1 if small else 2))]
            kw["invalid_tool_calls"] = []
            kw["usage_metadata"] = {"input_tokens": r.randint(1, 9000),
                                    "output_tokens": r.randint(1, 3000),
                                    "total_tokens": r.randint(2, 12000)}
        elif cls == "ToolMessage":
            kw["tool_call_id"] = "call_" + "%020x" % r.getrandbits(80)
            kw["status"] = r.choice(["success", "error"])
            kw["artifact"] = {"stdout": 'print(float("nan")) -> NaN\\n',
                              "elapsed": self.unit(), "rows": self.integer(),
                              "stats": {"mean": self.num(), "std": self.num()}}
        return {"lc": 1, "type": "constructor",
                "id": ["langchain_core", "messages", cls], "kwargs": kw}

    def data_store(self, n_floats):
        r = self.r
        dim = r.choice([4, 8, 16, 32, 64, 128])
        emb = []
        left = max(1, n_floats)
        while left > 0:
            k = min(dim, left)
            emb.append(self.vector(k))
            left -= k
        return {
            "neighbor_bounding_box": [self.num() for _ in range(4)],
            "embeddings": emb,
            "scores": {"NaN": self.unit(), "Infinity": self.unit(),
                       "-Infinity": self.unit(), "": self.num(),
                       "a/b": self.num(), "m~n": self.num(),
                       "\"q\"": self.num(), "\u03ba\u03bb\u03b5\u03b9\u03b4\u03af": self.unit(),
                       "\u952e\U0001F511": self.unit()},
            "labels": ["NaN", "Infinity", "-Infinity", "nan", "null"],
            "ids": [self.integer() for _ in range(r.randint(1, 4))],
            "converged": r.random() < 0.5,
            "error": None,
        }

    # --- the envelope --------------------------------------------------------
    def envelope(self, thread, parent, step, size, ensure_ascii):
        r = self.r
        cp_id = self.uuid(6)
        nodes = NODES if size >= 4000 else NODES[:3]
        ver = lambda: "%032d.0.%016x" % (step, r.getrandbits(64))  # noqa: E731
        env = {
            "thread_id": thread,
            "checkpoint_ns": "" if r.random() < 0.75 else "tools:" + self.uuid(),
            "checkpoint_id": cp_id,
            "parent_checkpoint_id": parent,
            "type": "checkpoint",
            "checkpoint": {
                "v": 1,
                "ts": "2024-%02d-%02dT%02d:%02d:%02d.%06d+00:00" % (
                    1 + step % 12, 1 + step % 28, step % 24, r.randrange(60),
                    r.randrange(60), r.randrange(10**6)),
                "id": cp_id,
                "channel_values": {"messages": [], "data_store": None},
                # Only the channels the checkpoint holds: a version
                # without a value is an incomplete checkpoint to nanguard.
                "channel_versions": {c: ver() for c in ("messages",
                                                        "data_store")},
                "versions_seen": {n: {m: ver() for m in nodes[:r.randint(0, 2)]}
                                  for n in nodes},
                "pending_sends": [],
            },
            "metadata": {"source": r.choice(["loop", "input", "update"]),
                         "step": step, "writes": None, "parents": {},
                         "thread_id": thread, "NaN": "Infinity"},
        }
        # Roughly a third to a half messages, the rest mostly floats.
        text_budget = int(size * r.uniform(0.3, 0.5))
        msgs = env["checkpoint"]["channel_values"]["messages"]
        used = 0
        # Escaped non-ASCII text takes about twice its length in characters.
        chars = 0.5 if ensure_ascii else 0.8
        while used < text_budget or not msgs:
            want = max(10, min(3000, int(((text_budget - used) * r.uniform(0.3, 1.0) - 350) * chars)))
            m = self.message(want)
            msgs.append(m)
            used += len(json.dumps(m, ensure_ascii=ensure_ascii)) + 2
        if r.random() < 0.5:
            env["metadata"]["writes"] = {"agent": {"messages": [msgs[-1]],
                                                   "score": self.unit()}}
        used = len(json.dumps(env, ensure_ascii=ensure_ascii)) + 800
        # A float takes about 21 bytes with its separator.
        n_floats = max(4, (size - used) // 21)
        env["checkpoint"]["channel_values"]["data_store"] = self.data_store(n_floats)
        if self.bad_rate and r.random() < self.bad_rate:
            for _ in range(r.randint(1, 3)):
                m = r.choice(msgs)["kwargs"]
                if r.random() < 0.5:
                    m["content"] = self.bad()
                else:
                    m.setdefault("additional_kwargs", {})["note"] = self.bad()
        return env, cp_id


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int)
    ap.add_argument("--total-bytes", type=int)
    ap.add_argument("--avg-bytes", type=int, default=3000)
    ap.add_argument("--nan-rate", type=float, default=0.01)
    ap.add_argument("--bad-rate", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ensure-ascii", choices=["0", "1", "mixed"], default="1")
    ap.add_argument("--out", default="-")
    a = ap.parse_args()
    if a.count is not None and a.total_bytes is not None:
        ap.error("--count and --total-bytes exclude each other")
    if a.count is None and a.total_bytes is None:
        a.count = 1000
    if a.avg_bytes < 200:
        ap.error("--avg-bytes must be at least 200")

    c = Corpus(a.seed, a.nan_rate, a.bad_rate)
    r = c.r
    out = sys.stdout.buffer if a.out == "-" else open(a.out, "wb")
    expect = a.count if a.count is not None else max(1, a.total_bytes // a.avg_bytes)
    n_threads = 1 + expect // 8
    threads = {}
    written = lines = ascii_lines = 0
    batch = []
    while (lines < a.count) if a.count is not None else (written < a.total_bytes):
        t = r.randrange(n_threads)
        thread = "thread-%05d-%08x" % (t, t * 2654435761 % 2**32)
        parent, step = threads.get(thread, (None, -1))
        step += 1
        size = int(a.avg_bytes * r.uniform(0.5, 1.5))
        ea = a.ensure_ascii == "1" or (a.ensure_ascii == "mixed" and r.random() < 0.5)
        env, cp_id = c.envelope(thread, parent, step, size, ea)
        threads[thread] = (cp_id, step)
        s = json.dumps(env, ensure_ascii=ea)
        line = (s + "\n").encode("utf-8", "nanguard_rawbytes")
        ascii_lines += ea
        batch.append(line)
        written += len(line)
        lines += 1
        if len(batch) >= 256:
            out.write(b"".join(batch))
            batch.clear()
    out.write(b"".join(batch))
    out.flush()
    if out is not sys.stdout.buffer:
        out.close()
    sys.stderr.write(
        "gen_checkpoints: %d messages (%d ensure_ascii), %d bytes, %.0f B/msg, "
        "%d floats, %d non-finite (%.4f), %d bad strings\n" % (
            lines, ascii_lines, written, written / max(1, lines), c.floats,
            c.nonfinite, c.nonfinite / max(1, c.floats), c.bad_strings))


if __name__ == "__main__":
    main()
