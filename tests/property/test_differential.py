#!/usr/bin/env python3
"""Differential test of `nanguard sanitize` against Python's json module.

Generates a corpus of checkpoint envelopes with tests/corpus/gen_checkpoints.py
(non-finite floats, \\u0000, lone surrogates, invalid UTF-8, mixed
ensure_ascii), runs the sanitizer over it and checks, line by line:

  (a) the output parses as strict JSON (no NaN / Infinity constants);
  (b) it equals json.loads of the input with every non-finite float (and
      every number a double or PostgreSQL's numeric cannot hold) replaced
      by None, and every \\u0000, lone surrogate and invalid UTF-8 subpart
      replaced by U+FFFD, compared exactly (types too, floats bit for bit
      but for the sign of zero);
  (b') it equals, byte for byte, the input rewritten by a small reference
      implementation of the contract in this file (so white space, number
      text and escapes are kept);
  (c) the line count is kept;
  (d) the report's counts equal the oracle's, "values" the line count, and
      "paths" the oracle's first 100 JSON Pointers;
  (e) sanitizing the output again changes nothing and reports no rewrites.

The default skeleton feed and --full-feed (every byte to yajl) must agree on
every file here and on 300 corrupted corpus lines: exit status, output,
stderr (byte offset and reason) and report.

Then hand-made edge files go through, each with its exact expected output,
counts and paths, and malformed inputs must fail with exit status 65.

Environment: NANGUARD_BIN (the nanguard binary), NANGUARD_TEST_TMP (scratch
directory, created), NANGUARD_SOURCE_DIR (optional; the generator is found
next to this file otherwise), NANGUARD_DIFF_COUNT (messages, default 12000),
NANGUARD_DIFF_SEED (default 20240711).

The last line of the output is "N passed, M failed"; the exit status is 0
only when nothing failed.
"""
import codecs
import json
import math
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("NANGUARD_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
GEN = os.path.join(SRC, "tests", "corpus", "gen_checkpoints.py")
BIN = os.environ.get("NANGUARD_BIN", "")
TMP = os.path.join(os.environ.get("NANGUARD_TEST_TMP") or "/tmp/nanguard-test", "differential")
COUNT = int(os.environ.get("NANGUARD_DIFF_COUNT", "12000"))
SEED = int(os.environ.get("NANGUARD_DIFF_SEED", "20240711"))

KINDS = ["nan", "infinity", "out_of_range", "nul_escape", "lone_surrogate", "invalid_utf8"]
PG_EXPONENT_LIMIT = 1073741823  # INT_MAX / 2: numeric_in refuses |exponent| >= this
PG_MAX_SCALE = 16383            # NUMERIC_DSCALE_MAX: digits after the point
MARK = "\U0010FFFE"             # stands for an invalid UTF-8 subpart while parsing

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok    %s" % name)
    else:
        failed += 1
        print("FAIL  %s" % name)
        if detail:
            for ln in str(detail).rstrip("\n").split("\n")[:12]:
                print("      " + (ln if len(ln) <= 400 else ln[:400] + "..."))
    sys.stdout.flush()
    return ok


# --- the oracle: Python's json module ----------------------------------------

class Repaired:
    """A value the sanitizer must have replaced by null."""
    __slots__ = ("kind",)

    def __init__(self, kind):
        self.kind = kind


class Obj:
    """A JSON object as its ordered list of members (keeps duplicates)."""
    __slots__ = ("pairs",)

    def __init__(self, pairs):
        self.pairs = pairs


NUM_RE = re.compile(r"-?(\d+)(?:\.(\d+))?(?:[eE]([-+]?\d+))?\Z")


def number_out_of_range(text):
    """Whether a JSON number is one a double or PostgreSQL's numeric cannot
    hold, per the sanitizer contract."""
    m = NUM_RE.match(text)
    if m is None:
        raise ValueError("not a JSON number: %r" % text[:40])
    frac = m.group(2) or ""
    exp = m.group(3) or "0"
    digits = exp.lstrip("+-").lstrip("0")
    if len(digits) > 10:
        return True
    e = int(exp)
    if abs(e) >= PG_EXPONENT_LIMIT:
        return True
    if len(frac) - e > PG_MAX_SCALE:
        return True
    return math.isinf(float(text))


def _parse_number(text, conv):
    if number_out_of_range(text):
        return Repaired("out_of_range")
    return conv(text)


def _parse_constant(name):
    return Repaired("nan" if name == "NaN" else "infinity")


def _strict_constant(name):
    raise ValueError("non-standard constant %s in output" % name)


_utf8_errors = [0]


def _mark_invalid(exc):
    _utf8_errors[0] += 1
    return MARK, exc.end


codecs.register_error("nanguard_mark", _mark_invalid)


_oracle_decoder = json.JSONDecoder(
    parse_constant=_parse_constant, parse_float=lambda s: _parse_number(s, float),
    parse_int=lambda s: _parse_number(s, int), object_pairs_hook=Obj)
_strict_decoder = json.JSONDecoder(parse_constant=_strict_constant, object_pairs_hook=Obj)
_WS = re.compile(r"[ \t\n\r]*")


def oracle_load(line):
    """Parses one input line (bytes) like the sanitizer must see it.
    Returns (value tree, counts dict); strings are left unrepaired (see
    oracle_expect)."""
    if MARK.encode() in line:
        raise ValueError("the input holds U+10FFFE; pick another MARK")
    _utf8_errors[0] = 0
    text = line.decode("utf-8", "nanguard_mark")
    counts = dict.fromkeys(KINDS, 0)
    counts["invalid_utf8"] = _utf8_errors[0]
    return _oracle_decoder.decode(text), counts


def oracle_stream(data):
    """oracle_load for a stream of values: [(value, counts)], the
    invalid_utf8 count all on the first."""
    if MARK.encode() in data:
        raise ValueError("the input holds U+10FFFE; pick another MARK")
    _utf8_errors[0] = 0
    text = data.decode("utf-8", "nanguard_mark")
    first = dict.fromkeys(KINDS, 0)
    first["invalid_utf8"] = _utf8_errors[0]
    out = []
    for v in _stream(text, _oracle_decoder):
        out.append((v, first if not out else dict.fromkeys(KINDS, 0)))
    return out


def _stream(text, decoder):
    vals = []
    i = _WS.match(text, 0).end()
    while i < len(text):
        v, i = decoder.raw_decode(text, i)
        vals.append(v)
        i = _WS.match(text, i).end()
    return vals


def load_stream(text, strict=True):
    return _stream(text, _strict_decoder if strict else _oracle_decoder)


def _fix_string(s, counts):
    """Repairs a decoded string; returns (new string, whether repaired)."""
    if s.isascii() and "\x00" not in s:
        return s, False
    out = []
    dirty = False
    for ch in s:
        cp = ord(ch)
        if cp == 0:
            counts["nul_escape"] += 1
        elif 0xD800 <= cp <= 0xDFFF:
            counts["lone_surrogate"] += 1
        elif ch != MARK:
            out.append(ch)
            continue
        out.append("\ufffd")
        dirty = True
    return ("".join(out), True) if dirty else (s, False)


def _ptr(tok):
    return "/" + str(tok).replace("~", "~0").replace("/", "~1")


def oracle_expect(val, counts, paths, key_repairs):
    """The value the output must parse to. Counts the repairs into counts
    and appends JSON Pointers of repaired values to paths (document order)."""
    def walk(v, path):
        if isinstance(v, Repaired):
            counts[v.kind] += 1
            paths.append(path)
            return None
        if isinstance(v, str):
            s, dirty = _fix_string(v, counts)
            if dirty:
                paths.append(path)
            return s
        if isinstance(v, list):
            return [walk(x, path + _ptr(i)) for i, x in enumerate(v)]
        if isinstance(v, Obj):
            pairs = []
            for k, x in v.pairs:
                k2, dirty = _fix_string(k, counts)
                if dirty:
                    key_repairs.append(path + _ptr(k2))
                pairs.append((k2, walk(x, path + _ptr(k2))))
            return Obj(pairs)
        return v
    return walk(val, "")


def strict_load(text):
    return _strict_decoder.decode(text)


def same(a, b, path=""):
    """None when a and b are the same JSON value exactly, else where not."""
    if type(a) is not type(b):
        return "%s: type %s vs %s" % (path or "/", type(a).__name__, type(b).__name__)
    if isinstance(a, Obj):
        if len(a.pairs) != len(b.pairs):
            return "%s: %d vs %d members" % (path or "/", len(a.pairs), len(b.pairs))
        for (ka, va), (kb, vb) in zip(a.pairs, b.pairs):
            if ka != kb:
                return "%s: key %r vs %r" % (path or "/", ka, kb)
            d = same(va, vb, path + _ptr(ka))
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return "%s: %d vs %d items" % (path or "/", len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            d = same(x, y, path + _ptr(i))
            if d:
                return d
        return None
    if isinstance(a, float):
        # Exact: same double (0.0 and -0.0 count as equal, as in Python).
        if a == b and not math.isnan(a):
            return None
        return "%s: %r vs %r" % (path or "/", a, b)
    if a != b:
        return "%s: %r vs %r" % (path or "/", a, b)
    return None


# --- reference rewrite, byte for byte ------------------------------------------

TOKEN_RE = re.compile(
    rb'"(?:[^"\\]|\\.)*"'                        # a string
    rb'|[-+]?(?:NaN|Infinity)'                   # a non-finite constant
    rb'|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?',       # a number
    re.S)
STRING_PART_RE = re.compile(rb'\\u([0-9a-fA-F]{4})|\\.|[\x80-\xff]+|[^\\\x80-\xff]+', re.S)


def _ref_string(tok):
    if b"\\u" not in tok and max(tok) < 0x80:
        return tok
    parts = [m for m in STRING_PART_RE.finditer(tok, 1, len(tok) - 1)]
    out = [b'"']
    i = 0
    while i < len(parts):
        m = parts[i]
        i += 1
        hexd = m.group(1)
        if hexd is not None:
            v = int(hexd, 16)
            if v == 0 or 0xDC00 <= v <= 0xDFFF:
                out.append(b"\\ufffd")
                continue
            if 0xD800 <= v <= 0xDBFF:
                nxt = parts[i].group(1) if i < len(parts) else None
                if nxt is not None and 0xDC00 <= int(nxt, 16) <= 0xDFFF:
                    out.append(m.group(0) + parts[i].group(0))
                    i += 1
                else:
                    out.append(b"\\ufffd")
                continue
            out.append(m.group(0))
            continue
        g = m.group(0)
        if g[0] >= 0x80:
            g = g.decode("utf-8", "replace").encode("utf-8")
        out.append(g)
    out.append(b'"')
    return b"".join(out)


def _ref_token(m):
    tok = m.group(0)
    c = tok[0]
    if c == 0x22:  # '"'
        return _ref_string(tok)
    if c in b"NI+" or tok[1:2] in (b"N", b"I"):
        return b"null"
    # Without an exponent and with fewer than 300 digits a number is in
    # range (most of them: spare the full check).
    if (len(tok) >= 300 or b"e" in tok or b"E" in tok) and number_out_of_range(tok.decode()):
        return b"null"
    return tok


def reference_rewrite(data):
    """The contract applied by a regex: what the sanitizer must output for
    well-formed input."""
    return TOKEN_RE.sub(_ref_token, data)


# --- running the binary ---------------------------------------------------------

def run(args, stdin=None, timeout=300):
    p = subprocess.run([BIN] + args, input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def sanitize_file(path, report):
    return run(["sanitize", "--report", report, path])


def load_report(path):
    with open(path, "rb") as f:
        return json.loads(f.read())


def first_diff(a, b):
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n if len(a) != len(b) else -1


def diff_hint(got, want):
    i = first_diff(got, want)
    lo = max(0, i - 60)
    return ("first difference at byte %d\n  got:  %r\n  want: %r" % (
        i, got[lo:i + 60], want[lo:i + 60]))


# --- the corpus -------------------------------------------------------------------

def corpus_checks():
    corpus = os.path.join(TMP, "corpus.ndjson")
    out = os.path.join(TMP, "corpus.out")
    out2 = os.path.join(TMP, "corpus.out2")
    rep = os.path.join(TMP, "corpus.report.json")
    rep2 = os.path.join(TMP, "corpus.report2.json")

    t0 = time.time()
    g = subprocess.run([sys.executable, GEN, "--count", str(COUNT), "--avg-bytes", "3000",
                        "--nan-rate", "0.05", "--bad-rate", "0.03", "--seed", str(SEED),
                        "--ensure-ascii", "mixed", "--out", corpus],
                       stderr=subprocess.PIPE)
    sys.stdout.write(g.stderr.decode())
    if not check("generate the corpus (%d messages, seed %d)" % (COUNT, SEED), g.returncode == 0):
        return
    with open(corpus, "rb") as f:
        data = f.read()
    print("      %d bytes in %.1f s" % (len(data), time.time() - t0))

    t0 = time.time()
    rc, stdout, err = run(["sanitize", "--report", rep, corpus])
    print("      sanitized in %.2f s (%.0f MB/s)" % (
        time.time() - t0, len(data) / 1e6 / max(1e-9, time.time() - t0)))
    if not check("sanitize the corpus: exit 0", rc == 0, "exit %d: %s" % (rc, err)):
        return
    with open(out, "wb") as f:
        f.write(stdout)

    in_lines = data.split(b"\n")
    out_lines = stdout.split(b"\n")
    check("(c) line count kept (%d lines)" % (len(in_lines) - 1),
          len(in_lines) == len(out_lines) and data.endswith(b"\n") == stdout.endswith(b"\n"),
          "input %d lines, output %d" % (len(in_lines) - 1, len(out_lines) - 1))
    in_lines.pop()
    if out_lines and out_lines[-1] == b"":
        out_lines.pop()

    # (a), (b), (b'), (d) line by line
    t0 = time.time()
    total = dict.fromkeys(KINDS, 0)
    paths = []
    key_repairs = []
    bad_a = bad_b = bad_ref = None
    n_a = n_b = n_ref = 0
    for n, (li, lo) in enumerate(zip(in_lines, out_lines), 1):
        ref = reference_rewrite(li)
        if ref != lo:
            n_ref += 1
            if bad_ref is None:
                bad_ref = "line %d: %s" % (n, diff_hint(lo, ref))
        try:
            got = strict_load(lo.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            n_a += 1
            if bad_a is None:
                bad_a = "line %d: %s\n  output: %r" % (n, e, lo[:300])
            continue
        val, counts = oracle_load(li)
        exp = oracle_expect(val, counts, paths, key_repairs)
        for k in KINDS:
            total[k] += counts[k]
        d = same(got, exp)
        if d:
            n_b += 1
            if bad_b is None:
                bad_b = "line %d: %s\n  %s" % (n, d, diff_hint(lo, li).replace(
                    "want", "input").replace("first difference", "first change"))
    print("      oracle over %d lines in %.1f s" % (len(in_lines), time.time() - t0))
    check("(b') every output line equals the reference rewrite byte for byte",
          n_ref == 0, "%d lines differ; first: %s" % (n_ref, bad_ref))
    check("(a) every output line is strict JSON", n_a == 0, "%d lines fail; first: %s" % (n_a, bad_a))
    check("(b) every output line equals the oracle's repaired input", n_b == 0,
          "%d lines differ; first: %s" % (n_b, bad_b))
    print("      oracle counts: %s" % json.dumps(total))

    r = load_report(rep)
    check("(d) report values = line count", r.get("values") == len(in_lines),
          "report values %r, lines %d" % (r.get("values"), len(in_lines)))
    rw = r.get("rewrites", {})
    check("(d) report nan + infinity = oracle's non-finite floats (%d + %d)" % (
        total["nan"], total["infinity"]),
        rw.get("nan") == total["nan"] and rw.get("infinity") == total["infinity"],
        "report %r, oracle %r" % (rw, total))
    check("(d) report counts of every kind = oracle's", rw == total,
          "report %r\n oracle %r" % (rw, total))
    check("(d) the corpus exercises every kind",
          all(total[k] > 0 for k in KINDS if k != "out_of_range"), repr(total))
    check("(d) report paths = oracle's first 100 pointers",
          not key_repairs and r.get("paths") == paths[:100],
          "report %r\n oracle %r" % (r.get("paths", [])[:10], paths[:10]))

    # (e) idempotence
    rc2, stdout2, err2 = run(["sanitize", "--report", rep2, out])
    with open(out2, "wb") as f:
        f.write(stdout2)
    check("(e) second pass: exit 0 and identical bytes", rc2 == 0 and stdout2 == stdout,
          "exit %d %s\n%s" % (rc2, err2, diff_hint(stdout2, stdout)))
    r2 = load_report(rep2) if rc2 == 0 else {}
    check("(e) second pass reports zero rewrites",
          rc2 == 0 and all(v == 0 for v in r2.get("rewrites", {1: 1}).values())
          and r2.get("paths") == [] and r2.get("values") == len(in_lines), repr(r2)[:400])

    # The same bytes through stdin, and the corpus split in two files.
    rc3, stdout3, err3 = run(["sanitize"], stdin=data)
    check("stdin gives the same output as a file", rc3 == 0 and stdout3 == stdout,
          "exit %d %s" % (rc3, err3))
    half = data.index(b"\n", len(data) // 2) + 1
    pa, pb = os.path.join(TMP, "part1.ndjson"), os.path.join(TMP, "part2.ndjson")
    with open(pa, "wb") as f:
        f.write(data[:half])
    with open(pb, "wb") as f:
        f.write(data[half:])
    rep3 = os.path.join(TMP, "parts.report.json")
    rc4, stdout4, err4 = run(["sanitize", "--report", rep3, pa, pb])
    r4 = load_report(rep3) if rc4 == 0 else {}
    check("two input files: same output and report as one",
          rc4 == 0 and stdout4 == stdout and r4 == r,
          "exit %d %s" % (rc4, err4))


# --- hand-made edge cases ---------------------------------------------------------

def J(s):
    """Bytes from a str written with \\xNN for raw bytes (latin-1)."""
    return s.encode("latin-1")


EDGE = [
    # name, input, expected output, expected non-zero counts, expected paths
    ("words inside strings and keys are kept",
     J('{"a":"NaN","b":"Infinity","c":"-Infinity","d":"+NaN","NaN":1,"Infinity":[2],'
       '"-Infinity":{"x":"NaN "},"e":" NaN","f":"x NaN y"}\n'),
     None, {}, []),
    ("escaped quotes and backslashes next to the words",
     J('["a\\"NaN","a\\\\",NaN,"\\\\\\"Infinity\\\\\\"",-Infinity,"\\\\",Infinity,'
       '"NaN\\\\","\\"-Infinity\\""]\n'),
     J('["a\\"NaN","a\\\\",null,"\\\\\\"Infinity\\\\\\"",null,"\\\\",null,'
       '"NaN\\\\","\\"-Infinity\\""]\n'),
     {"nan": 1, "infinity": 2}, ["/2", "/4", "/6"]),
    ("keys named NaN / Infinity with non-finite values",
     J('{"NaN":NaN,"Infinity":Infinity,"-Infinity":-Infinity}\n'),
     J('{"NaN":null,"Infinity":null,"-Infinity":null}\n'),
     {"nan": 1, "infinity": 2}, ["/NaN", "/Infinity", "/-Infinity"]),
    ("number text kept byte for byte",
     J('[1.50000000000000000001,-0,1E+2,-0.0,1e-400,0.1e1,1.7976931348623157e308,'
       '1.7976931348623158e308,123456789012345678901234567890,5e-324,1e-16383,'
       '-0E-0,2.5e-5,1e+308,0.000001,-9007199254740993]\n'),
     None, {}, []),
    ("numbers out of range become null",
     J('[1e400,-1e309,1.7976931348623159e308,1e-16384,0e99999999999,1.5e-16383,1'
       + "0" * 309 + ',-1e+1073741823,1e-1073741823,0.5]\n'),
     J('[null,null,null,null,null,null,null,null,null,0.5]\n'),
     {"out_of_range": 9}, ["/0", "/1", "/2", "/3", "/4", "/5", "/6", "/7", "/8"]),
    ("zeros with big exponents and tiny numbers are in range",
     J('[0e400,-0E+999,0.0e-16382,0.' + "0" * 300 + '1e401,1e-320,-2.4703282292062328e-324]\n'),
     None, {}, []),
    ("white space around repairs kept",
     J('{ "a" :\tNaN ,\r\n "b":[ -Infinity ,Infinity ] }\n'),
     J('{ "a" :\tnull ,\r\n "b":[ null ,null ] }\n'),
     {"nan": 1, "infinity": 2}, ["/a", "/b/0", "/b/1"]),
    ("signed words",
     J('[+NaN,-NaN,+Infinity,-Infinity]\n'), J('[null,null,null,null]\n'),
     {"nan": 2, "infinity": 2}, ["/0", "/1", "/2", "/3"]),
    ("top-level words, one per line",
     J('NaN\nInfinity\n-Infinity\n1\n"NaN"\n'), J('null\nnull\nnull\n1\n"NaN"\n'),
     {"nan": 1, "infinity": 2}, ["", "", ""]),
    ("concatenated values without separators",
     J('[NaN][1]{"a":NaN}"x"NaN'), J('[null][1]{"a":null}"x"null'),
     {"nan": 3}, ["/0", "/a", ""]),
    ("\\u0000 in strings",
     J('["\\u0000","a\\u0000b","\\\\u0000","\\u0000\\u0000"]\n'),
     J('["\\ufffd","a\\ufffdb","\\\\u0000","\\ufffd\\ufffd"]\n'),
     {"nul_escape": 4}, ["/0", "/1", "/3"]),
    ("lone surrogate escapes",
     J('["\\ud800","\\udc00","\\ud800x","\\ud83d\\ude00","\\ud800\\ud83d\\ude00",'
       '"\\udbff\\udfff","\\ude00\\ud83d","\\ud800\\n","\\ud800\\\\","\\ud800\\u0000",'
       '"\\uD800\\uDC00","\\uDBFF"]\n'),
     J('["\\ufffd","\\ufffd","\\ufffdx","\\ud83d\\ude00","\\ufffd\\ud83d\\ude00",'
       '"\\udbff\\udfff","\\ufffd\\ufffd","\\ufffd\\n","\\ufffd\\\\","\\ufffd\\ufffd",'
       '"\\uD800\\uDC00","\\ufffd"]\n'),
     {"lone_surrogate": 10, "nul_escape": 1},
     ["/0", "/1", "/2", "/4", "/6", "/7", "/8", "/9", "/11"]),
    ("invalid UTF-8 in strings",
     J('["\xff","a\xe2\x82","\xe2\x82x","\xed\xa0\x80","\xc0\xaf","\xf4\x90\x80\x80",'
       '"\xf0\x9f\x98","caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 ok","\x80\xbf"]\n'),
     J('["\xef\xbf\xbd","a\xef\xbf\xbd","\xef\xbf\xbdx",'
       '"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd","\xef\xbf\xbd\xef\xbf\xbd",'
       '"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd","\xef\xbf\xbd",'
       '"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 ok","\xef\xbf\xbd\xef\xbf\xbd"]\n'),
     {"invalid_utf8": 15}, ["/0", "/1", "/2", "/3", "/4", "/5", "/6", "/8"]),
    ("repairs inside keys",
     J('{"k\\u0000":1,"\\ud800":2,"\xff":3}\n'),
     J('{"k\\ufffd":1,"\\ufffd":2,"\xef\xbf\xbd":3}\n'),
     {"nul_escape": 1, "lone_surrogate": 1, "invalid_utf8": 1}, None),
    ("JSON Pointer escaping in report paths",
     J('{"a/b":{"m~n":NaN},"":[Infinity],"\\u03ba\\ud83d\\udd11":NaN,"~1":NaN}\n'),
     J('{"a/b":{"m~n":null},"":[null],"\\u03ba\\ud83d\\udd11":null,"~1":null}\n'),
     {"nan": 3, "infinity": 1}, ["/a~1b/m~0n", "//0", "/\u03ba\U0001F511", "/~01"]),
    ("deep nesting (900 levels) with NaN at the bottom",
     J("[" * 900 + "NaN" + "]" * 900 + "\n"), J("[" * 900 + "null" + "]" * 900 + "\n"),
     {"nan": 1}, ["/0" * 900]),
    ("a stream of empty containers and literals",
     J('[] {} true false null 0 "" [[],{}]\n'), None, {}, []),
]

MALFORMED = [
    ("lowercase nan", b"[nan]\n"),
    ("Nan", b"[Nan]\n"),
    ("Inf", b"[Inf]\n"),
    ("NaNa", b"[NaNa]\n"),
    ("-NaNx", b"[-NaNx]\n"),
    ("trailing comma", b"[1,]\n"),
    ("leading zero", b"[01]\n"),
    ("single quotes", b"{'a': 1}\n"),
    ("unterminated string", b'["abc\n'),
    ("raw control char in string", b'["a\x01b"]\n'),
    ("bad escape", b'["\\x41"]\n'),
    ("short \\u escape", b'["\\u12"]\n'),
    ("empty input", b""),
    ("only white space", b" \n\t\n"),
    ("unclosed array", b"[1, NaN\n"),
    ("NaN then garbage", b"NaN}\n"),
    ("too deep (1001 levels)", b"[" * 1001 + b"]" * 1001 + b"\n"),
    ("a good line then a bad one", b'{"a":NaN}\n{"a":nan}\n'),
]


def edge_checks():
    for i, (name, data, want, want_counts, want_paths) in enumerate(EDGE):
        path = os.path.join(TMP, "edge%02d.json" % i)
        rep = os.path.join(TMP, "edge%02d.report.json" % i)
        with open(path, "wb") as f:
            f.write(data)
        if want is None:
            want = data
        rc, out, err = sanitize_file(path, rep)
        problems = []
        if rc != 0:
            problems.append("exit %d: %s" % (rc, err.strip()))
        elif out != want:
            problems.append(diff_hint(out, want))
        else:
            r = load_report(rep)
            counts = dict.fromkeys(KINDS, 0)
            counts.update(want_counts)
            if r["rewrites"] != counts:
                problems.append("counts %r, want %r" % (r["rewrites"], counts))
            if want_paths is not None and r["paths"] != want_paths:
                problems.append("paths %r, want %r" % (r["paths"], want_paths))
            # The reference rewrite and the oracle must agree (checks this
            # file as much as the sanitizer), the latter when Python's json
            # can read the input (not +NaN, -NaN, +Infinity).
            ref = reference_rewrite(data)
            if ref != want:
                problems.append("reference rewrite disagrees: " + diff_hint(ref, want))
            nvals = len(load_stream(want.decode("utf-8", "replace"), strict=True))
            if r["values"] != nvals:
                problems.append("values %r, want %d" % (r["values"], nvals))
            if not re.search(rb"[-+]NaN|\+Infinity", data):
                try:
                    oc = dict.fromkeys(KINDS, 0)
                    exp = []
                    for val, c in oracle_stream(data):
                        exp.append(oracle_expect(val, c, [], []))
                        for k in KINDS:
                            oc[k] += c[k]
                    got = load_stream(out.decode("utf-8"), strict=True)
                    d = same(got, exp)
                    if d:
                        problems.append("oracle: " + d)
                    if oc != counts:
                        problems.append("oracle counts %r" % oc)
                except ValueError as e:
                    problems.append("oracle cannot read it: %s" % e)
            # Idempotence on the edge case too.
            rc2, out2, err2 = run(["sanitize", "--report", rep + "2", "-"], stdin=out)
            if rc2 != 0 or out2 != out:
                problems.append("second pass changed it (exit %d %s)" % (rc2, err2.strip()))
            elif any(load_report(rep + "2")["rewrites"].values()):
                problems.append("second pass reports rewrites")
        check("edge: " + name, not problems, "\n".join(problems))

    for i, (name, data) in enumerate(MALFORMED):
        path = os.path.join(TMP, "bad%02d.json" % i)
        with open(path, "wb") as f:
            f.write(data)
        rc, out, err = run(["sanitize", path])
        ok = rc == 65 and "byte" in err
        check("malformed: %s -> exit 65 with a byte offset" % name, ok,
              "exit %d, stderr %r" % (rc, err.strip()[:200]))


# --- both feed modes -------------------------------------------------------------

def both_modes(path):
    """The skeleton feed (default) and --full-feed on one file: the same
    exit status, output, stderr (byte offset and reason) and report."""
    got = []
    for extra in ([], ["--full-feed"]):
        rep = path + (".full" if extra else ".skel") + ".report.json"
        rc, out, err = run(["sanitize", "--report", rep] + extra + [path])
        report = load_report(rep) if os.path.exists(rep) else None
        if os.path.exists(rep):
            os.unlink(rep)
        got.append((rc, out, err, report))
    return got[0] == got[1], got


def feed_mode_checks():
    import random
    files = sorted(os.path.join(TMP, n) for n in os.listdir(TMP)
                   if re.match(r"(edge|bad)\d+\.json$|corpus\.ndjson$", n))
    bad = [p for p in files if not both_modes(p)[0]]
    check("both feed modes agree on the %d edge, malformed and corpus files" % len(files),
          not bad, "differ: %s" % bad[:5])
    # Corrupted corpus lines: one byte deleted, doubled or replaced, or the
    # line cut, so that the modes are compared on errors too.
    corpus = os.path.join(TMP, "corpus.ndjson")
    if not os.path.exists(corpus):
        return
    with open(corpus, "rb") as f:
        lines = [l for l in f.read().split(b"\n") if l]
    rng = random.Random(SEED)
    differ, errors = [], 0
    path = os.path.join(TMP, "mutant.json")
    for i in range(300):
        line = bytearray(rng.choice(lines))
        at = rng.randrange(len(line))
        how = rng.randrange(4)
        if how == 0:
            del line[at]
        elif how == 1:
            line.insert(at, line[at])
        elif how == 2:
            line[at] = rng.choice(b'",]}\\\x01N0 :[{e.-')
        else:
            del line[at:]
        with open(path, "wb") as f:
            f.write(bytes(line) + b"\n")
        same_out, got = both_modes(path)
        errors += got[0][0] != 0
        if not same_out:
            differ.append((i, got[0][0], got[0][2][:120], got[1][0], got[1][2][:120]))
    check("both feed modes agree on 300 corrupted corpus lines (%d refused)" % errors,
          not differ and errors > 100, "differ: %r" % differ[:3])
    os.unlink(path)


def main():
    sys.setrecursionlimit(20000)  # the deep edge case and the tree walks
    if not BIN or not os.access(BIN, os.X_OK):
        print("NANGUARD_BIN is not set to the nanguard binary (%r)" % BIN)
        print("0 passed, 1 failed")
        return 1
    os.makedirs(TMP, exist_ok=True)
    t0 = time.time()
    edge_checks()
    corpus_checks()
    feed_mode_checks()
    if not failed:  # keep the evidence only when something failed
        for name in os.listdir(TMP):
            if name.endswith((".ndjson", ".out", ".out2")):
                os.unlink(os.path.join(TMP, name))
    print("differential: %.1f s" % (time.time() - t0))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
