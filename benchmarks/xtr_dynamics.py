"""The XTR replicability study's token-score dynamics (its Figs. 3-4) on one or more token stores,
SciFact test:

* **retrieved-token scores**: for every query token, the similarity of its top k' document tokens
  from the flat token index the multi-vector searcher uses (the searcher's own token search,
  ``ColbertSearcher.candidates``): mean, std, p10/p50/p90 and a histogram of the rank-1 score and
  of the rank-k' score;
* **anisotropy**: the mean cosine of seeded random pairs of document token vectors (two distinct
  tokens of the store), and of query tokens against document tokens;
* **gold and lexical tokens**: the share of retrieved tokens (top k', and rank 1) whose word piece
  is the query token's own, and the share that belong to a judged-relevant document (qrels
  relevance >= 1) of the query.

Every figure is given for two groups of query tokens: ``all`` (the 32 rows the searcher
retrieves with, [CLS], [SEP] and the [MASK] padding included) and ``word pieces`` (those three
and any marker token left out). The lexical share is over word pieces only: [CLS] and [SEP] are
stored as document tokens too, so they would match themselves. Word pieces are compared by id
(one id per string in a vocabulary). The token store keeps no token ids: the documents are
re-tokenised here with the family's own document tokenisation and punctuation skip-list (the
card's ``ColbertModel.token_ids`` and ``keep_mask``, as the encoder ran them), and every
document's count of kept word pieces must equal its stored vector count.

    python benchmarks/xtr_dynamics.py [--encoders colbert-minilm-l6-v2 ...] [--queries 300]
        [--k-primes 100 1000] [--work FOLDER] [--build]

Writes ``benchmarks/results/xtr_dynamics.json`` (one record per store: a later run with other
``--encoders`` replaces those stores' records and keeps the others), and from all its records
``docs/figures/xtr-token-scores.png`` (rank-1 score histograms per store, overlaid) with the
numbers behind it in ``docs/figures/xtr-token-scores.tsv``. The stores and flat token indexes
are those ``pyserini-ext index multivector --dataset beir/scifact --param encoder=...`` builds;
one that is missing or stale is an error unless ``--build`` is given (then it is built).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "xtr_dynamics.json"
FIGURE = ROOT / "docs" / "figures" / "xtr-token-scores.png"
EDGES = np.linspace(-1.0, 1.0, 201)  # histogram bins of width 0.01 over the cosine range
GROUPS = ("all", "word pieces")


# --- pure computations ---------------------------------------------------------------------

def summarize(values) -> dict:
    """Count, mean, population std, min, p10, p50, p90 and max of ``values``."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("no values to summarise")
    p10, p50, p90 = np.percentile(v, [10, 50, 90])
    return {"n": int(v.size), "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "p10": float(p10), "p50": float(p50), "p90": float(p90), "max": float(v.max())}


def histogram(values, edges=EDGES) -> list[int]:
    """Counts of ``values`` in the bins ``edges`` (the last bin closed); values outside the range
    (FP16 rounding can put a cosine a hair above 1) count in the first or last bin."""
    edges = np.asarray(edges, dtype=np.float64)
    v = np.clip(np.asarray(values, dtype=np.float64).ravel(), edges[0], edges[-1])
    return np.histogram(v, bins=edges)[0].astype(int).tolist()


def sample_pairs(n_left: int, n_right: int, count: int, rng: np.random.Generator,
                 distinct: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``count`` uniform random (left, right) index pairs; ``distinct``: left and right index the
    same set and a pair never joins an element with itself."""
    if distinct and n_left < 2:
        raise ValueError("distinct pairs need at least two elements")
    left = rng.integers(0, n_left, count)
    right = rng.integers(0, n_right, count)
    while distinct and (same := left == right).any():
        right[same] = rng.integers(0, n_right, int(same.sum()))
    return left, right


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``a`` with the same row of ``b`` (computed, not assumed from unit norms)."""
    dots = np.einsum("ij,ij->i", a, b, dtype=np.float64)  # FP64 sums without FP64 copies of the rows
    norms = np.sqrt(np.einsum("ij,ij->i", a, a, dtype=np.float64) * np.einsum("ij,ij->i", b, b, dtype=np.float64))
    if (norms == 0).any():
        raise ValueError("a zero vector has no cosine")
    return dots / norms


def norm_summary(vectors: np.ndarray) -> dict:
    """How far ``vectors`` are from unit length: min, max and mean L2 norm."""
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))
    return {"min": float(norms.min()), "max": float(norms.max()), "mean": float(norms.mean())}


def content_mask(query_ids: np.ndarray, skip_ids, head: int = 0) -> np.ndarray:
    """Query positions that are word pieces of the query text: not one of ``skip_ids`` ([CLS],
    [SEP], [MASK], padding...) and not among the first ``head`` positions ([CLS] and a marker)."""
    mask = ~np.isin(query_ids, np.asarray(list(skip_ids), dtype=np.int64))
    mask[..., :head] = False
    return mask


def share(matches: np.ndarray, rows: np.ndarray | None = None, k: int | None = None) -> float:
    """The share of True in ``matches`` (query tokens x retrieved ranks) over the rows ``rows``
    (a boolean mask; all rows when None) and the first ``k`` ranks (all when None)."""
    m = matches if rows is None else matches[rows]
    m = m if k is None else m[:, :k]
    if m.size == 0:
        raise ValueError("no retrieved tokens to count")
    return float(m.mean())


def distinct_per_row(values: np.ndarray) -> np.ndarray:
    """How many distinct values each row of ``values`` holds."""
    ordered = np.sort(values, axis=1)
    return 1 + (np.diff(ordered, axis=1) != 0).sum(axis=1)


def lexical_matches(query_ids: np.ndarray, retrieved_ids: np.ndarray) -> np.ndarray:
    """``retrieved_ids[i, r] == query_ids[i]``: query token i's rank-r retrieved token is its word piece."""
    return np.asarray(retrieved_ids) == np.asarray(query_ids)[:, None]


def gold_matches(retrieved_docs: np.ndarray, row_query: np.ndarray, gold: list[np.ndarray]) -> np.ndarray:
    """Whether each retrieved token's document (``retrieved_docs``: query tokens x ranks, document
    indices) is judged relevant to the query that row belongs to (``row_query[i]``, an index into
    ``gold``, each the relevant document indices of one query)."""
    out = np.zeros(retrieved_docs.shape, dtype=bool)
    for q, docs in enumerate(gold):
        rows = np.flatnonzero(row_query == q)
        if len(rows) and len(docs):
            out[rows] = np.isin(retrieved_docs[rows], docs)
    return out


def aligned_token_ids(kept: list[np.ndarray], lengths: np.ndarray, docids: list[str] | None = None) -> np.ndarray:
    """The word-piece id of every stored token vector: the documents' kept ids (``kept``, in store
    order) concatenated, after checking each document's count against its stored vector count."""
    lengths = np.asarray(lengths)
    if len(kept) != len(lengths):
        raise ValueError(f"{len(kept)} re-tokenised documents for {len(lengths)} stored documents")
    counts = np.array([len(k) for k in kept])
    bad = np.flatnonzero(counts != lengths)
    if len(bad):
        name = docids[bad[0]] if docids is not None else f"#{bad[0]}"
        raise ValueError(f"re-tokenised word pieces do not line up with the store: {len(bad)} documents differ, "
                         f"the first {name} with {counts[bad[0]]} kept word pieces against {lengths[bad[0]]} "
                         f"stored vectors")
    return np.concatenate(kept).astype(np.int64) if kept else np.zeros(0, dtype=np.int64)


def retrieved_summary(scores: np.ndarray, docs: np.ndarray, lexical: np.ndarray, gold: np.ndarray,
                      rows: np.ndarray, k_primes: list[int], lexical_rows: np.ndarray | None = None) -> dict:
    """One group of query tokens (``rows``): rank-1 and rank-k' score summaries and histograms,
    the gold share (over ``rows``) and, given ``lexical_rows``, the lexical share over those, for
    every k'; and how many distinct documents a query token's top k' tokens come from."""
    out = {"query tokens": int(rows.sum()),
           "rank 1": {**summarize(scores[rows, 0]), "histogram": histogram(scores[rows, 0]),
                      "gold share": share(gold, rows, 1)}}
    if lexical_rows is not None:
        out["rank 1"]["lexical share"] = share(lexical, lexical_rows, 1)
    for k in k_primes:
        at_k = scores[rows, k - 1]
        entry = {"rank k'": {**summarize(at_k), "histogram": histogram(at_k)}, "gold share": share(gold, rows, k),
                 "documents per query token": float(distinct_per_row(docs[rows, :k]).mean())}
        if lexical_rows is not None:
            entry["lexical share"] = share(lexical, lexical_rows, k)
        out[f"k'={k}"] = entry
    return out


def figure_table(records: dict, group: str) -> tuple[np.ndarray, dict[str, list[int]]]:
    """The bin edges and, per store, the rank-1 histogram counts of ``group`` (edges must agree)."""
    edges, counts = None, {}
    for name, record in records.items():
        e = np.asarray(record["histogram edges"])
        if edges is not None and (len(e) != len(edges) or not np.allclose(e, edges)):
            raise ValueError(f"{name}'s histogram bins differ from the other stores'; re-run it")
        edges = e
        counts[name] = record["retrieved"][group]["rank 1"]["histogram"]
    return edges, counts


# --- loading and wiring ------------------------------------------------------------------

def require_current(ws, card) -> None:
    """Refuse (SystemExit) when the card's token store or flat token index in ``ws`` is missing or
    stale: opening the searcher would build it, which only ``--build`` allows."""
    from pyserini_ext.recipes import MultiVectorParams, store_dir
    from pyserini_ext.store import TokenStore, check_built_from, stale_reasons

    folder = store_dir(ws, card)
    checks = [(folder, ws.built_from(card))]
    if check_built_from(folder, checks[0][1]) == "current":
        nlist = MultiVectorParams().nlist  # the flat index records it too (build_multivector)
        checks.append((folder.with_name("flat.faiss"), {**ws.built_from(card, kind="flat", nlist=nlist),
                                                         "source": TokenStore(folder).digest,
                                                         "builder": {"kind": "flat"}}))
    for path, built_from in checks:
        state = check_built_from(path, built_from)
        if state != "current":
            why = "missing" if state == "missing" else "stale: " + "; ".join(stale_reasons(path, built_from))
            raise SystemExit(f"{path} is {why}. Opening the searcher would build it; build it first "
                             f"(pyserini-ext index multivector --dataset beir/scifact --param encoder={card.name}) "
                             f"or pass --build.")


def document_token_ids(net, ws, store) -> np.ndarray:
    """Every stored token's word-piece id, by the family's own document tokenisation and skip-list."""
    o = net.options
    kept: list[np.ndarray] = []
    docids: list[str] = []
    batch: list[str] = []

    def flush():
        inputs = net.token_ids(batch, o.doc_marker, o.doc_prompt, o.doc_length, False)
        keep = net.keep_mask(inputs)
        kept.extend(ids[k] for ids, k in zip(inputs["input_ids"], keep))
        batch.clear()

    for doc in ws.dataset.docs():
        docids.append(doc.docid)
        batch.append(f"{doc.title} {doc.text}".strip())  # as ColbertDocumentEncoder.encode joins them
        if len(batch) == 256:
            flush()
    if batch:
        flush()
    if docids != list(store.docids):
        raise ValueError("the corpus's documents are not in the store's order")
    return aligned_token_ids(kept, store.lengths, docids)


def study_store(encoder: str, args, topics: dict, qrels: dict) -> dict:
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.recipes import build_searcher, workspace
    from pyserini_ext.repro.results import commit, machine

    started = time.perf_counter()
    ws = workspace("beir/scifact", args.work, quiet=True)
    card = load_card(encoder)
    if not args.build:
        require_current(ws, card)
    kmax = max(args.k_primes)
    searcher = build_searcher("multivector", {"encoder": encoder, "scorer": "colbert", "token_index": "flat",
                                              "k_prime": kmax}, ws)
    net = getattr(searcher.query_encoder, "net", None)
    if not (hasattr(net, "token_ids") and hasattr(net, "keep_mask")):
        raise SystemExit(f"{encoder}: its query encoder does not expose the colbert family's tokenisation")
    store, o = searcher.store, net.options
    doc_ids = document_token_ids(net, ws, store)
    token_doc = searcher.token_doc

    texts = list(topics.values())
    queries = searcher.query_encoder.encode_batch(texts)
    query_ids = net.token_ids(texts, o.query_marker, o.query_prompt, o.query_length, True)["input_ids"]
    if query_ids.shape != queries.shape[:2]:
        raise ValueError(f"query ids {query_ids.shape} and query vectors {queries.shape[:2]} differ")
    tokenizer = net.tokenizer
    skip = set(tokenizer.all_special_ids)
    head = 1 + len(net.marker_ids(o.query_marker))
    m = queries.shape[1]
    flat_ids = query_ids.reshape(-1)
    words = content_mask(query_ids, skip, head).reshape(-1)
    punctuation = np.isin(flat_ids, net.skiplist)  # never stored for documents, so never matched

    searched = time.perf_counter()
    scores, ids = searcher.candidates(queries.reshape(-1, queries.shape[2]))
    search_seconds = time.perf_counter() - searched
    if (ids < 0).any():
        raise ValueError("the token index returned fewer than k' tokens for some query token")
    retrieved_docs = token_doc[ids]
    lexical = lexical_matches(flat_ids, doc_ids[ids])
    index_of = {d: i for i, d in enumerate(store.docids)}
    gold = [np.array(sorted(index_of[d] for d, rel in qrels.get(q, {}).items() if rel >= 1 and d in index_of),
                     dtype=np.int64) for q in topics]
    gold_hits = gold_matches(retrieved_docs, np.repeat(np.arange(len(texts)), m), gold)

    groups = {"all": np.ones(len(flat_ids), dtype=bool), "word pieces": words}
    retrieved = {g: retrieved_summary(scores, retrieved_docs, lexical, gold_hits, rows, sorted(args.k_primes),
                                      rows if g == "word pieces" else None)
                 for g, rows in groups.items()}
    stored_words = words & ~punctuation
    retrieved["word pieces"]["lexical share, punctuation left out"] = {
        "query tokens": int(stored_words.sum()), "rank 1": share(lexical, stored_words, 1),
        **{f"k'={k}": share(lexical, stored_words, k) for k in sorted(args.k_primes)}}

    rng = np.random.default_rng(args.seed)
    left, right = sample_pairs(store.num_tokens, store.num_tokens, args.pairs, rng, distinct=True)
    positions = np.unique(np.concatenate([left, right]))
    sample = store.gather(positions)
    a, b = sample[np.searchsorted(positions, left)], sample[np.searchsorted(positions, right)]
    all_q = queries.reshape(-1, queries.shape[2])
    anisotropy = {"pairs": args.pairs, "seed": args.seed,
                  "document norms (sampled)": norm_summary(sample), "query norms": norm_summary(all_q),
                  "document-document": summarize(cosines(a, b))}
    for g, rows in groups.items():
        q_rows = np.flatnonzero(rows)
        qi, dj = sample_pairs(len(q_rows), len(positions), args.pairs, rng)
        anisotropy[f"query ({g})-document"] = summarize(cosines(all_q[q_rows[qi]], sample[dj]))

    return {
        "encoder": encoder, "dataset": "beir/scifact test", "queries": len(texts),
        "query tokens": int(len(flat_ids)), "k_primes": sorted(args.k_primes),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
        "commit": commit(), "command": "python benchmarks/xtr_dynamics.py " + " ".join(sys.argv[1:]),
        "store": {"documents": store.num_docs, "tokens": store.num_tokens, "dim": store.dim},
        "skipped query tokens": {
            "rule": "word pieces leave out [CLS], the marker, [SEP], [MASK] and padding (the tokenizer's special "
                    "tokens); the lexical share counts word pieces only, the gold share and scores both groups",
            "skipped": int((~words).sum()), "of which [MASK]": int((flat_ids == tokenizer.mask_token_id).sum()),
            "punctuation word pieces (kept, never stored for documents)": int((words & punctuation).sum())},
        "retrieved": retrieved, "anisotropy": anisotropy,
        "histogram edges": EDGES.tolist(),
        "seconds": {"token search": round(search_seconds, 1), "total": round(time.perf_counter() - started, 1)},
    }


def write_figure(records: dict, path: Path) -> Path:
    """Rank-1 retrieved-score histograms (share of query tokens per bin), every store overlaid, one
    panel per query-token group; the counts behind it in ``path`` with ``.tsv``."""
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tables = {g: figure_table(records, g) for g in GROUPS}
    edges = tables[GROUPS[0]][0]
    used = np.flatnonzero(np.sum([c for _, counts in tables.values() for c in counts.values()], axis=0))
    lo, hi = edges[max(used[0] - 2, 0)], edges[min(used[-1] + 3, len(edges) - 1)]
    fig, axes = plt.subplots(1, len(GROUPS), figsize=(6 * len(GROUPS), 4), squeeze=False)
    for ax, g in zip(axes[0], GROUPS):
        for name, counts in tables[g][1].items():
            c = np.asarray(counts, dtype=float)
            ax.stairs(c / c.sum(), edges, label=f"{name} ({records[name]['queries']} queries)", linewidth=1.5)
        ax.set_xlim(lo, hi)
        ax.set_xlabel("rank-1 retrieved token score (cosine)")
        ax.set_ylabel("share of query tokens")
        ax.set_title(f"query tokens: {g}", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle("SciFact test: each query token's best retrieved document token (flat token index)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    with open(path.with_suffix(".tsv"), "w", encoding="utf-8") as f:
        columns = [f"{name} {g}" for g in GROUPS for name in tables[g][1]]
        f.write("\t".join(["bin low", "bin high", *columns]) + "\n")
        for i in range(len(edges) - 1):
            row = [tables[g][1][name][i] for g in GROUPS for name in tables[g][1]]
            f.write("\t".join([f"{edges[i]:.2f}", f"{edges[i + 1]:.2f}", *map(str, row)]) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", default=["colbert-minilm-l6-v2"])
    parser.add_argument("--queries", type=int, default=300, help="the first N SciFact test queries")
    parser.add_argument("--k-primes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--pairs", type=int, default=100_000, help="random pairs for the anisotropy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="the work folder (default $PYSERINI_EXT_WORK)")
    parser.add_argument("--build", action="store_true", help="build a missing or stale store or index")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--figure", type=Path, default=FIGURE)
    args = parser.parse_args()
    if min(args.k_primes) < 1:
        parser.error("every k' must be at least 1")
    if args.work is not None:  # cards of models trained here resolve in the same work folder
        os.environ["PYSERINI_EXT_WORK"] = str(args.work)

    import pyserini_ext  # noqa: F401  (configures Java before pyserini)
    from pyserini_ext.data import resolve_dataset

    dataset = resolve_dataset("beir/scifact")
    topics = dict(list(dataset.topics("test").items())[: args.queries])
    qrels = {q: judged for q, judged in dataset.qrels("test").items() if q in topics}
    records = json.loads(args.out.read_text())["stores"] if args.out.exists() else {}
    for encoder in args.encoders:
        record = study_store(encoder, args, topics, qrels)
        records[encoder] = record
        r = record["retrieved"]["word pieces"]
        print(f"{encoder}: rank-1 score {r['rank 1']['mean']:.4f} (word pieces), lexical rank 1 "
              f"{r['rank 1'].get('lexical share', float('nan')):.4f}, document-document cosine "
              f"{record['anisotropy']['document-document']['mean']:.4f}, {record['seconds']['total']:.0f} s",
              flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"benchmark": "xtr_dynamics", "stores": records}, indent=1) + "\n")
    print(f"wrote {args.out} and {write_figure(records, args.figure)}")


if __name__ == "__main__":
    main()
