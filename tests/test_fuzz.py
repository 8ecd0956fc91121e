"""Issue 14: generated malformed inputs through every reader and loader.

Each input is a valid sample file mutated by Hypothesis (bytes flipped, inserted, deleted,
lines repeated or cut, tokens that broke readers before: tabs, spaces and newlines in ids,
BOMs, invalid UTF-8, lone surrogates, NaN, deep nesting, YAML aliases, unclosed tags), or
random bytes, sometimes gzipped (and the gzip then damaged). Every outcome must be one of:

* a project error (:class:`pyserini_ext.schema.InputError`) whose message starts with the
  file's path and, for a line-oriented reader, a line that exists;
* an acceptance equal to an independent parse written here (the format's rules restated
  with the ``json``/``gzip``/``yaml`` standard parsers and plain string code), so a silent
  misreading fails; the structured files (specs, cards, configs, SGML) are checked against
  what PyYAML or the raw text says, and each accepted value against its documented range.

Anything else (a raw library exception, a wrong acceptance, more than TIME_BOX seconds
on one input) fails. ``FUZZ_EXAMPLES`` examples per target (default 40: the CI slice, a few
seconds); ``make fuzz`` runs 1,000 per target over 12 targets and prints the tally.
"""

from __future__ import annotations

import collections
import gzip
import json
import math
import os
import re
import signal
import zlib
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyserini_ext.data.readers import (read_beir_corpus, read_beir_qrels, read_beir_queries, read_jsonl_collection,
                                       read_sgml_topics, read_trec_qrels, read_tsv_collection, read_tsv_topics)
from pyserini_ext.schema import InputError
from pyserini_ext.search.run import read_trec_run

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
TIME_BOX = 10  # seconds for one input; the slowest legitimate one takes milliseconds
TALLY: collections.Counter = collections.Counter()
REFUSE = object()  # the oracle's verdict for an input that must be refused

# --- the independent parse ---------------------------------------------------------------------


def decoded_lines(data: bytes, gz: bool):
    """The file's lines as the formats define them, or REFUSE."""
    if gz:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return REFUSE
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return REFUSE
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def plain_id(value: str) -> bool:
    """Non-empty, no whitespace, no C0/C1 control character, no surrogate."""
    return bool(value) and not any(c.isspace() or ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0
                                   or 0xD800 <= ord(c) < 0xE000 for c in value)


def no_surrogates(value: str) -> bool:
    return not any(0xD800 <= ord(c) < 0xE000 for c in value)


def grade(text: str):
    return int(text.strip()) if re.fullmatch(r"[-+]?[0-9]{1,9}", text.strip()) else REFUSE


def oracle_key_text(lines, key_unique=True):
    entries = {}
    for line in lines:
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if "\t" not in line:
            return REFUSE
        key, text = line.split("\t", 1)
        key = key.strip()
        if not plain_id(key) or (key_unique and key in entries):
            return REFUSE
        entries[key] = text
    return entries


def oracle_tsv_topics(lines):
    entries = oracle_key_text(lines)
    if entries is REFUSE or not entries:
        return REFUSE
    return {k: v.strip() for k, v in entries.items()}


def oracle_tsv_collection(lines):
    entries = oracle_key_text(lines)
    return REFUSE if entries is REFUSE else [(k, "", v) for k, v in entries.items()]


def judge(qrels, qid, docid, value):
    if not (plain_id(qid) and plain_id(docid)) or value is REFUSE:
        return False
    if qrels.setdefault(qid, {}).setdefault(docid, value) != value:
        return False
    return True


def oracle_trec_qrels(lines):
    qrels = {}
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 4 or not judge(qrels, parts[0], parts[2], grade(parts[3])):
            return REFUSE
    return qrels or REFUSE


def oracle_beir_qrels(lines):
    qrels = {}
    for number, line in enumerate(lines, start=1):
        row = line.rstrip("\r").split("\t")
        if not line.strip() or (number == 1 and row[0] == "query-id"):
            continue
        if len(row) != 3 or not judge(qrels, row[0], row[1], grade(row[2])):
            return REFUSE
    return qrels or REFUSE


def oracle_run(lines):
    run, seen = {}, set()
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 6 or not (plain_id(parts[0]) and plain_id(parts[2])) or (parts[0], parts[2]) in seen:
            return REFUSE
        try:
            score = float(parts[4])
        except ValueError:
            return REFUSE
        if not math.isfinite(score):
            return REFUSE
        seen.add((parts[0], parts[2]))
        run.setdefault(parts[0], []).append((parts[2], score))
    return run


def json_objects(lines):
    for line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            yield REFUSE
            return
        yield obj if isinstance(obj, dict) else REFUSE


def json_id(obj, key):
    value = obj.get(key, REFUSE)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and plain_id(value) else REFUSE


def json_text(obj, key, required=True):
    if key not in obj:
        return REFUSE if required else ""
    value = obj[key]
    return value if isinstance(value, str) and no_surrogates(value) else REFUSE


def oracle_json_docs(lines, id_key, text_key, title_key=None):
    docs, ids = [], set()
    for obj in json_objects(lines):
        if obj is REFUSE:
            return REFUSE
        docid = json_id(obj, id_key)
        title = json_text(obj, title_key, required=False) if title_key else ""
        text = json_text(obj, text_key)
        if REFUSE in (docid, title, text) or docid in ids:
            return REFUSE
        ids.add(docid)
        docs.append((docid, title, text))
    return docs


def oracle_beir_queries(lines):
    docs = oracle_json_docs(lines, "_id", "text")  # queries have no title; other keys are ignored
    if docs is REFUSE or not docs:
        return REFUSE
    return {d[0]: d[2] for d in docs}


# --- the targets ---------------------------------------------------------------------------------

def as_docs(result):
    return [(d.docid, d.title, d.text) for d in result]


def as_run(result):
    return {q: [(h.docid, h.score) for h in hits] for q, hits in result.items()}


BEIR_DOCS = b"".join(json.dumps({"_id": f"d{i}", "title": f"T{i}", "text": f"text {i}"}).encode() + b"\n"
                     for i in range(4))
LINE_TARGETS = {
    "tsv_topics": ("topics.tsv", b"q1\tfirst query\nq2\tsecond\n301\tthird one\n", read_tsv_topics,
                   lambda r: r, oracle_tsv_topics),
    "tsv_collection": ("collection.tsv", b"d1\tone text\nd2\ttwo\td3\n", read_tsv_collection, as_docs,
                       oracle_tsv_collection),
    "trec_qrels": ("qrels.txt", b"q1 0 d1 1\nq1 0 d2 0\nq2 Q0 d1 2\n", read_trec_qrels, lambda r: r,
                   oracle_trec_qrels),
    "beir_qrels": ("qrels.tsv", b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\n", read_beir_qrels,
                   lambda r: r, oracle_beir_qrels),
    "trec_run": ("run.txt", b"q1 Q0 d1 1 2.5 t\nq1 Q0 d2 2 1.0 t\nq2 Q0 d1 1 -0.5 t\n", read_trec_run, as_run,
                 oracle_run),
    "beir_corpus": ("corpus.jsonl", BEIR_DOCS, read_beir_corpus, as_docs,
                    lambda lines: oracle_json_docs(lines, "_id", "text", "title")),
    "beir_queries": ("queries.jsonl", BEIR_DOCS, read_beir_queries, lambda r: r, oracle_beir_queries),
    "jsonl_collection": ("docs.jsonl", b'{"id": "a", "contents": "x y"}\n{"id": 7, "contents": ""}\n',
                         read_jsonl_collection, as_docs, lambda lines: oracle_json_docs(lines, "id", "contents")),
}

TOKENS = [b"\t", b" ", b"\n", b"\r\n", b"\xff", b"\xc3", b"\xef\xbb\xbf", b"\x00", b"\x1c", b"\xe2\x80\xa8", b'"',
          b"\\ud800", b"\\u0000", b"{", b"}", b"[", b"]" * 3, b"[" * 2000, b"nan", b"inf", b"-1", b"1e999", b"1.5",
          b"99999999999", b"<top>", b"</top>", b"<num>", b"<title>", b"&a [1, 2]", b"*a", b": ", b"- ", b"#",
          b"'no'", b".inf", b".nan", b"~", b"!!python/object:os.system", b"query-id", b"Q0", b"0"]


@st.composite
def mutated(draw, seed: bytes, tokens=TOKENS):
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "flip", "delete", "truncate", "repeat_line", "swap_lines",
                                   "replace_field", "replace_field", "replace_field"]))
        at = draw(st.integers(0, len(data)))
        if op == "replace_field":  # one field (or a YAML value) becomes a token: the file stays well formed around it
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            parts = re.split(rb"(: |\s+|, )", lines[i])
            k = draw(st.integers(0, len(parts) - 1)) // 2 * 2
            parts[k] = draw(st.sampled_from(tokens))
            lines[i] = b"".join(parts)
            data = bytearray(b"\n".join(lines))
        elif op == "insert":
            data[at:at] = draw(st.sampled_from(tokens))
        elif op == "flip" and data:
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[at:]
        elif op in ("repeat_line", "swap_lines"):
            lines = bytes(data).split(b"\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if op == "repeat_line":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


@st.composite
def maybe_gzipped(draw, seed: bytes):
    data = draw(mutated(seed))
    if draw(st.integers(0, 4)):
        return data, False
    packed = bytearray(gzip.compress(data))
    if draw(st.booleans()):  # damage the compressed stream
        at = draw(st.integers(0, len(packed) - 1))
        if draw(st.booleans()):
            del packed[at:]
        else:
            packed[at] ^= draw(st.integers(1, 255))
    return bytes(packed), True


class _Hang(Exception):
    pass


def _time_boxed(call):
    def alarm(*_):
        raise _Hang(f"no answer within {TIME_BOX} s")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(TIME_BOX)
    try:
        return call()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def refused_properly(err: Exception, path: Path, n_lines: int | None) -> None:
    message = str(err)
    assert isinstance(err, InputError), f"raw {type(err).__name__}: {message}"
    assert message.startswith(str(path)), f"error without the file name: {message}"
    line = re.match(re.escape(str(path)) + r":(\d+):", message)
    if line and n_lines is not None:
        assert 1 <= int(line.group(1)) <= n_lines + 1, f"line {line.group(1)} of {n_lines}: {message}"


FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=EXAMPLES <= 100,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("target", sorted(LINE_TARGETS))
def test_line_readers(folder, target):
    name, seed, read, view, oracle = LINE_TARGETS[target]

    @FUZZ
    @given(maybe_gzipped(seed))
    def check(case):
        data, gz = case
        path = folder / (name + (".gz" if gz else ""))
        path.write_bytes(data)
        expected = decoded_lines(data, gz)
        if expected is not REFUSE:
            expected = oracle(expected)
        try:
            result = _time_boxed(lambda: view(read(path)))
        except _Hang:
            raise
        except Exception as err:  # noqa: BLE001 (what kind of error it is, is the point)
            lines = decoded_lines(data, gz)
            refused_properly(err, path, None if lines is REFUSE else len(lines))
            TALLY[(target, "refused" if expected is REFUSE else "refused, oracle accepts")] += 1
            return
        assert expected is not REFUSE, f"wrong silent acceptance of {data[:300]!r}: {result!r}"[:2000]
        assert result == expected, f"misread {data[:300]!r}"
        TALLY[(target, "accepted")] += 1

    check()


# --- SGML topics: accepted topics must be what the text says ----------------------------------

SGML = (b"<top>\n<num> Number: 301\n<title> International Organized Crime\n<desc> Description:\nx\n</top>\n\n"
        b"<top>\n<num> Number: 302\n<title> Poliomyelitis\n</top>\n")


def test_sgml_topics(folder):
    @FUZZ
    @given(maybe_gzipped(SGML))
    def check(case):
        data, gz = case
        path = folder / ("topics.txt" + (".gz" if gz else ""))
        path.write_bytes(data)
        lines = decoded_lines(data, gz)
        try:
            topics = _time_boxed(lambda: read_sgml_topics(path))
        except _Hang:
            raise
        except Exception as err:  # noqa: BLE001
            refused_properly(err, path, None if lines is REFUSE else len(lines))
            TALLY[("sgml_topics", "refused")] += 1
            return
        assert lines is not REFUSE, "accepted a file that is not UTF-8 text or not gzip"
        text = "\n".join(lines)
        opened = len(re.findall(r"<(?:top|doc)>", text, re.IGNORECASE))
        closed = len(re.findall(r"</(?:top|doc)>", text, re.IGNORECASE))
        assert len(topics) == opened <= closed, "a topic was dropped or invented"
        for qid, title in topics.items():
            assert plain_id(qid) and qid in text and all(word in text for word in title.split())
        TALLY[("sgml_topics", "accepted")] += 1

    check()


# --- specs, encoder cards, training configs: accepted values are the file's, in range --------

SPEC = b"""\
description: a spec
dataset: cacm
split: all
pipeline:
  searcher: bm25
  params: {k1: 0.9, b: 0.4}
  hits: 1000
  tie_policy: docid
relevance_level: 1
metrics:
  MAP:
    expected: 0.3123
    tolerance: 0.001
    source: test
"""
CARD = b"""\
family: dense
model: {hub: sentence-transformers/all-MiniLM-L6-v2, revision: 8b3219a92973c328a8e22fadcfa821b5dc75636a}
pooling: mean
normalize: true
max_query_length: 256
max_doc_length: 256
"""
CONFIG = b"""\
student: all-minilm-l6-v2
loss: {name: info_nce, tau: 0.05}
data: {dataset: beir/scifact, split: train, negatives: {searcher: bm25, depth: 30, count: 3, seed: 0}}
batch_size: 8
learning_rate: 3.0e-5
warmup: 0.1
max_steps: 60
"""
YAML_TOKENS = TOKENS + [b"1e-5", b"-0.5", b"2", b"7.5", b"true", b"'abc'", b"null", b"\n  extra: 1", b"P@0",
                        b"nDCG@10", b"&x 1", b"*x", b"<<: *x", b"!!binary aGk=", b"{a: [", b"\n" + b"  " * 80 + b"a: 1"]


def independent_yaml(data: bytes):
    try:
        return yaml.load(data.decode("utf-8-sig"), Loader=yaml.SafeLoader)
    except Exception:  # noqa: BLE001 (unreadable: the loader under test must refuse it)
        return REFUSE


def number(value) -> float:
    assert isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value)


def accepted_spec(spec, raw):
    assert spec.dataset == raw["dataset"] and spec.split == raw["split"] and isinstance(spec.dataset, str)
    assert spec.pipeline.searcher == raw["pipeline"]["searcher"] and spec.pipeline.hits >= 1
    assert spec.pipeline.hits == raw["pipeline"].get("hits", 1000)
    assert spec.relevance_level == raw.get("relevance_level", 1) >= 1
    assert [e.metric for e in spec.metrics] == list(raw["metrics"])
    for e in spec.metrics:
        entry = raw["metrics"][e.metric]
        assert e.expected == number(entry["expected"]) and 0 <= e.expected <= 1
        assert e.tolerance == number(entry["tolerance"]) and 0 <= e.tolerance <= 1
        assert not re.search(r"@0*$|@0+\b", e.metric)


def accepted_card(card, raw):
    options = {k: v for k, v in raw.items() if k not in ("family", "model", "name", "description")}
    assert card.family.name == raw["family"]
    for key, value in options.items():
        got = getattr(card.options, key)
        assert got == value and type(got) in (type(value), float)
    assert card.options.max_doc_length >= 1 and card.options.max_query_length >= 1
    assert isinstance(card.options.normalize, bool)
    model = raw["model"] if isinstance(raw["model"], dict) else {"hub": raw["model"]}
    assert card.model.revision == model.get("revision")  # a pin is a full commit id of a hub model
    assert card.model.revision is None or (re.fullmatch(r"[0-9a-f]{40}", card.model.revision) and model.get("hub"))


def accepted_config(config, raw):
    assert config.student == raw["student"] and config.batch_size >= 1
    assert 0 < number(config.learning_rate) <= 1 and 0 <= number(config.warmup) <= 1
    for key in ("batch_size", "learning_rate", "warmup", "max_steps"):
        if key in raw:
            assert getattr(config, key) == raw[key] and not isinstance(raw[key], bool)
    assert config.data.negatives.depth >= 1


def _yaml_targets():
    from pyserini_ext.encode.base import parse_card
    from pyserini_ext.repro.spec import parse_spec
    from pyserini_ext.train.trainer import load_config

    return {"spec": ("spec.yaml", SPEC, parse_spec, accepted_spec),
            "card": ("card.yaml", CARD, parse_card, accepted_card),
            "config": ("config.yaml", CONFIG, load_config, accepted_config)}


@pytest.mark.parametrize("target", ["spec", "card", "config"])
def test_yaml_loaders(folder, target):
    name, seed, load, accepted = _yaml_targets()[target]
    (folder / name).write_bytes(seed)
    load(folder / name)  # the first load imports the encoder families (seconds): not inside the time box

    @FUZZ
    @given(mutated(seed, YAML_TOKENS))
    def check(data):
        path = folder / name
        path.write_bytes(data)
        try:
            loaded = _time_boxed(lambda: load(path))
        except _Hang:
            raise
        except Exception as err:  # noqa: BLE001
            refused_properly(err, path, None)
            TALLY[(target, "refused")] += 1
            return
        raw = independent_yaml(data)
        assert isinstance(raw, dict), f"accepted what PyYAML cannot read as a mapping: {data[:300]!r}"
        assert not any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(data.decode("utf-8-sig"))), \
            "accepted an alias"
        accepted(loaded, raw)
        TALLY[(target, "accepted")] += 1

    check()


def test_zz_tally(capsys):
    """Prints the tally of every fuzz test run before it in this session (make fuzz shows it)."""
    total = sum(TALLY.values())
    if not total:  # run alone (or with -k): no fuzz test ran before it, so there is nothing to print
        pytest.skip("no fuzz inputs were tallied in this session (run the whole file, or make fuzz)")
    with capsys.disabled():
        print(f"\nfuzz: {total} inputs, {EXAMPLES} per target")
        for (target, outcome), count in sorted(TALLY.items()):
            print(f"  {target:18s} {outcome:26s} {count}")
