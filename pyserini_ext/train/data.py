"""Training lists from a dataset's train split: positives from the qrels, hard negatives
mined by our own searchers, and teacher scores computed once and cached.

An :class:`Example` is one query with a fixed-length candidate list: one judged
positive first, then ``count`` negatives drawn (seeded, per query) from the top
``depth`` hits of a named searcher, judged documents excluded. A query with several
positives gives one example per positive, sharing its negatives. Lists and teacher
scores are cached under ``<work>/train/`` as JSON lines and NumPy arrays named by
everything that determines them.

Without labels (ColBERT-Zero's stage 1, :class:`Unsupervised`), an example is one pair
mined from raw documents: a title and its text, or two disjoint random spans of one text;
its "document" is the pair's own text (``texts[pair id]``), and the other pairs of the batch
are its negatives.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from pyserini_ext.data.datasets import Dataset
from pyserini_ext.index.dense import write_atomic
from pyserini_ext.schema import checked

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    qid: str
    query: str
    docids: tuple[str, ...]  # the positive first, then the negatives


@dataclass(frozen=True)
class Negatives:
    searcher: str = "bm25"  # a named searcher (pyserini_ext.recipes.SEARCHERS)
    params: dict = field(default_factory=dict)  # its parameters, e.g. {encoder: all-minilm-l6-v2}
    depth: int = checked(30, ge=1)  # hits searched per query
    count: int = checked(3, ge=1)  # negatives per list
    seed: int = checked(0, ge=0)

    def cards(self) -> list[str]:
        """The encoder cards the mining searcher names (``encoder`` at any depth of its
        parameters, e.g. a re-ranker's and its first stage's): the lists change with them."""
        def walk(params: dict):
            for key, value in params.items():
                if key == "encoder" and isinstance(value, str):
                    yield value
                elif isinstance(value, dict):
                    yield from walk(value)
        return list(walk(self.params))


@dataclass(frozen=True)
class Unsupervised:
    """Pairs mined from raw corpora with no topic or judgement read (ColBERT-Zero's stage 1,
    after Contriever's and the E5/Nomic pre-training pairs). Each document gives a title ->
    text pair when both are non-empty, and ``spans`` pairs of two disjoint random word spans
    of its text (a ``query_words`` span as the query, a ``doc_words`` span as the document)
    when the text has at least ``query_words + doc_words`` words."""
    # Datasets whose documents are paired; empty: the judged lists. A list, not a tuple: the
    # config is recorded in training.json and compared after a JSON round trip.
    corpora: list[str] = field(default_factory=list)
    titles: bool = True
    spans: int = checked(1, ge=0)  # random-span pairs per document long enough
    query_words: int = checked(16, ge=1)
    doc_words: int = checked(64, ge=1)
    seed: int = checked(0, ge=0)

    def __post_init__(self):
        if self.corpora and not self.titles and self.spans == 0:
            raise ValueError("'titles' is false and 'spans' is 0: no pair would be mined")


def document_pairs(corpus: str, doc, unsupervised: Unsupervised) -> list[tuple[str, str, str]]:
    """``(pair id, query, text)`` for each pair ``doc`` gives (see :class:`Unsupervised`)."""
    u, pairs = unsupervised, []
    title, text = doc.title.strip(), doc.text.strip()
    if u.titles and title and text:
        pairs.append((f"{corpus}/{doc.docid}/title", title, text))
    words = text.split()
    free = len(words) - u.query_words - u.doc_words  # words outside both spans
    if free < 0:
        return pairs
    # Seeded per document, so a document's spans do not depend on which other documents exist.
    rng = random.Random(f"{u.seed}:{corpus}:{doc.docid}")
    for k in range(u.spans):
        query_first = rng.random() < 0.5
        first, second = (u.query_words, u.doc_words) if query_first else (u.doc_words, u.query_words)
        start = rng.randint(0, free)  # the first span's start, then the gap before the second
        after = start + first + rng.randint(0, free - start)
        a, b = " ".join(words[start:start + first]), " ".join(words[after:after + second])
        query, passage = (a, b) if query_first else (b, a)
        pairs.append((f"{corpus}/{doc.docid}/span{k}", query, passage))
    return pairs


def unsupervised_pairs(unsupervised: Unsupervised, workdir: Path) -> tuple[list[Example], dict[str, str]]:
    """Every corpus's pairs (cached), as one-candidate examples and their texts. Reads
    documents only: no topics, no qrels."""
    from pyserini_ext.data.datasets import get_dataset

    datasets = [get_dataset(name) for name in unsupervised.corpora]
    key = json.dumps([[[d.name, d.fingerprint()] for d in datasets], asdict(unsupervised)], sort_keys=True)
    path = workdir / "train" / f"pairs-{_digest(key)}.jsonl"
    if not path.exists():
        lines = [json.dumps({"id": i, "query": q, "text": t})
                 for d in datasets for doc in d.docs() for i, q, t in document_pairs(d.name, doc, unsupervised)]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, "".join(line + "\n" for line in lines).encode("utf-8"))
        log.info("%d unsupervised pairs from %s -> %s", len(lines), ", ".join(unsupervised.corpora), path)
    examples, texts = [], {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                raw = json.loads(line)
                examples.append(Example(raw["id"], raw["query"], (raw["id"],)))
                texts[raw["id"]] = raw["text"]
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{number}: not a training pair ({err!r})") from None
    return examples, texts


def mine_examples(dataset: Dataset, split: str, negatives: Negatives, workdir: Path, quiet: bool = True) -> list[Example]:
    """The split's training lists (cached): ``[positive, negative x count]`` per judged positive."""
    path = lists_path(dataset, split, negatives, workdir)
    if path.exists():
        return read_examples(path)
    from pyserini_ext.recipes import build_searcher, workspace
    from pyserini_ext.search.run import search_topics

    topics, qrels = dataset.topics(split), dataset.qrels(split)
    searcher = build_searcher(negatives.searcher, negatives.params, workspace(dataset, workdir, quiet=quiet))
    judged = [q for q in topics if any(rel > 0 for rel in qrels.get(q, {}).values())]
    run = search_topics(searcher, {q: topics[q] for q in judged}, negatives.depth)
    examples = []
    for qid in judged:
        positives = sorted(d for d, rel in qrels[qid].items() if rel > 0)
        pool = [h.docid for h in run[qid] if h.docid not in qrels[qid]]
        if len(pool) < negatives.count:
            log.warning("query %s: only %d unjudged hits in the top %d; skipped", qid, len(pool), negatives.depth)
            continue
        # Seeded per query, so a query's negatives do not depend on which other queries exist.
        chosen = random.Random(f"{negatives.seed}:{qid}").sample(pool, negatives.count)
        examples += [Example(qid, topics[qid], (positive, *chosen)) for positive in positives]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "".join(json.dumps(asdict(e)) + "\n" for e in examples).encode("utf-8"))
    log.info("%d training lists from %d queries (%s negatives) -> %s", len(examples), len(judged),
             negatives.searcher, path)
    return examples


def lists_path(dataset: Dataset, split: str, negatives: Negatives, workdir: Path) -> Path:
    """Where the lists are cached, named by everything that determines them; a card the miner
    names enters by its identity (not its name): a student retrained or a card edited in place
    mines other negatives (HN lists mined by a trained student)."""
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.recipes import card_identity

    record = [dataset.name, dataset.fingerprint(), split, asdict(negatives)]
    if cards := negatives.cards():
        record.append({name: card_identity(load_card(name)) for name in cards})
    return workdir / "train" / f"lists-{_digest(json.dumps(record, sort_keys=True))}.jsonl"


def read_examples(path: Path) -> list[Example]:
    examples = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                raw = json.loads(line)
                examples.append(Example(raw["qid"], raw["query"], tuple(raw["docids"])))
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{number}: not a training list ({err!r})") from None
    return examples


def doc_texts(dataset: Dataset, docids: Iterable[str]) -> dict[str, str]:
    """``"title text"`` (as every document encoder joins them) for ``docids``, one corpus pass."""
    wanted = set(docids)
    texts = {d.docid: f"{d.title} {d.text}".strip() for d in dataset.docs() if d.docid in wanted}
    missing = wanted - texts.keys()
    if missing:
        raise KeyError(f"{len(missing)} training docids are not in {dataset.name}'s corpus, e.g. {sorted(missing)[:3]}")
    return texts


def teacher_scores(card_name: str, examples: list[Example], texts: dict[str, str], workdir: Path) -> np.ndarray:
    """The teacher card's score for every candidate of every list (``lists x candidates``), cached.

    Each candidate is scored by the teacher family's own ``pair_scores``: MaxSim over
    token vectors for ``colbert``, the inner product of the vectors for the dense families
    (for MRL, -2 KL + const), the sparse dot product of impacts for ``splade``.
    """
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.recipes import card_identity

    card = load_card(card_name)
    # Keyed by what the card outputs (family, options, weights), not its name: a card edited in
    # place, or a teacher retrained, must not be served the scores of what it was before.
    key = json.dumps([card_identity(card), [asdict(e) for e in examples]], sort_keys=True)
    path = workdir / "train" / f"teacher-{card.name}-{_digest(key)}.npy"
    if path.exists():
        return np.load(path)
    docids = sorted({d for e in examples for d in e.docids})
    row = {d: i for i, d in enumerate(docids)}
    qids = list(dict.fromkeys(e.qid for e in examples))
    queries = {e.qid: e.query for e in examples}
    query_reps = card.query_encoder().encode_batch([queries[q] for q in qids])
    doc_reps = card.document_encoder().encode([texts[d] for d in docids])
    q_row = {q: i for i, q in enumerate(qids)}
    scores = np.empty((len(examples), len(examples[0].docids)), dtype=np.float32)
    for i, e in enumerate(examples):
        q, docs = query_reps[q_row[e.qid]], [doc_reps[row[d]] for d in e.docids]
        scores[i] = card.family.pair_scores(q, docs)
    buffer = io.BytesIO()
    np.save(buffer, scores)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buffer.getvalue())
    return scores


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
