"""The composition root: how a named searcher is built for a dataset in a work folder.

A *recipe* (:class:`SearcherType`) has a name, its parameters (a dataclass with defaults:
an unknown key is an error) and a ``build(params, workspace)`` that builds what it needs
under the work folder (reusing what is current, rebuilding what is stale) and opens a
searcher. The CLI's ``index`` and ``search`` verbs, regression specs, training's negative
mining and :func:`open_searcher` all go through here, and nothing else knows the on-disk
layout. A :class:`Workspace` carries the dataset, the work folder and the run's
:class:`~pyserini_ext.search.ties.TieOrder` to everything a recipe builds, so a tie group
cut inside a searcher, a first stage or a fusion is cut in the run's order.

What an encoder card's documents become is its family's business (``family.store``:
``vectors``, ``impacts`` or ``tokens``); this module only decides where that store lives
and what it was built from. Other packages add recipes through the entry-point group
``pyserini_ext.searchers``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pyserini_ext.paths import index_root, work_dir
from pyserini_ext.registry import Registry
from pyserini_ext.search.ties import TieOrder


@dataclass(frozen=True)
class Workspace:
    """Where a recipe builds (``workdir``), for which dataset, ordering ties by ``ties``."""

    dataset: Any  # pyserini_ext.data.Dataset
    workdir: Path
    ties: TieOrder = TieOrder()
    quiet: bool = False
    used: set = field(default_factory=set, compare=False, repr=False)  # the folders recipes asked for
    ray: str | None = None  # encode on Ray: "local" (a local instance), "auto" or an address; None: here

    def root(self, encoder: str | None = None) -> Path:
        folder = index_root(self.workdir, self.dataset.slug, encoder)
        self.used.add(folder)
        return folder

    def built_from(self, card=None, **params) -> dict:
        """What a store or index folder records it was built from; any change rebuilds it."""
        from pyserini_ext import __version__

        record = {"corpus": self.dataset.fingerprint(), "version": __version__, "params": params}
        if card is not None:
            record["encoder"] = card_identity(card)
        return record


@dataclass(frozen=True)
class SearcherType:
    name: str
    params: type  # dataclass of parameters with defaults
    build: Callable[[Any, Workspace], Any]  # (params, workspace) -> searcher with Pyserini's batch_search

    def parse_params(self, raw: dict) -> Any:
        known = {f.name for f in dataclasses.fields(self.params)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise KeyError(f"unknown parameter {unknown[0]!r} for searcher {self.name!r}; known: {', '.join(sorted(known))}")
        return self.params(**raw)


SEARCHERS: Registry[SearcherType] = Registry("searcher", "pyserini_ext.searchers")


def workspace(dataset, work: Path | str | None = None, ties: TieOrder | None = None, quiet: bool = False) -> Workspace:
    """A workspace for ``dataset`` (a Dataset, or anything :func:`resolve_dataset` takes)."""
    from pyserini_ext.data import resolve_dataset

    if isinstance(dataset, str):
        dataset = resolve_dataset(dataset)
    return Workspace(dataset, Path(work) if work is not None else work_dir(), ties or TieOrder(), quiet)


def build_searcher(name: str, raw_params: dict, ws: Workspace):
    kind = SEARCHERS.get(name)
    return kind.build(kind.parse_params(raw_params or {}), ws)


def open_searcher(name: str, dataset, *, work: Path | str | None = None, ties: TieOrder | None = None,
                  quiet: bool = True, **params):
    """A registered searcher over ``dataset``, its index built in the work folder if missing or stale.

    ``open_searcher("dense", "beir/scifact", encoder="all-minilm-l6-v2", index="hnsw")``;
    ``dataset`` is a name, a BEIR or Pyserini folder, a dataset card or ``irds:ID``.
    """
    return build_searcher(name, params, workspace(dataset, work, ties, quiet))


def card_identity(card) -> str:
    """A digest of everything in an encoder card that changes what its encoders output:
    family, options, model source, and for a model trained here, its weights' size and mtime."""
    from pyserini_ext.paths import trained_model_dir

    model = dataclasses.asdict(card.model)
    if model.get("revision") is None:  # fields added later enter only when set: old folders stay current
        model.pop("revision", None)
    options = dataclasses.asdict(card.options)
    if options.get("calibration", False) is None:  # likewise the static INT8 calibration (int8-static cards only)
        options.pop("calibration")
    if options.get("projection_dim", None) == 0:  # likewise the dense family's projection (projected cards only)
        options.pop("projection_dim")
    record = {"family": card.family.name, "options": options, "model": model}
    if card.model.trained:
        folder = trained_model_dir(card.model.trained)
        record["trained"] = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                                   for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else None
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def _load_card(name: str):
    from pyserini_ext.encode.base import load_card  # imports torch: only when a recipe needs a card

    return load_card(name)


def corpus_size(ws: Workspace) -> int:
    """How many documents the corpus has (the total of progress bars): counted once, then read
    from ``indexes/<dataset>.count.json``, kept while the corpus fingerprint is the same."""
    path = index_root(ws.workdir, ws.dataset.slug).with_name(f"{ws.dataset.slug}.count.json")
    fingerprint = ws.dataset.fingerprint()
    try:
        stored = json.loads(path.read_text())
        if stored.get("corpus") == fingerprint:
            return int(stored["count"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    count = sum(1 for _ in ws.dataset.docs())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"corpus": fingerprint, "count": count}) + "\n")
    return count


# --- Stores: what a card's documents become ----------------------------------------------

STORE_FOLDERS = {"vectors": "shards", "impacts": "impact-encoded", "tokens": "tokens"}


def store_dir(ws: Workspace, card) -> Path:
    return ws.root(card.name) / STORE_FOLDERS[card.family.store]


def encoded_store(ws: Workspace, card) -> Path:
    """The card's document store for the workspace's corpus, encoded (resumably) unless current."""
    from pyserini_ext.store import encode_corpus, encode_impact_corpus, encode_token_corpus

    encode = {"vectors": encode_corpus, "impacts": encode_impact_corpus, "tokens": encode_token_corpus}
    folder = store_dir(ws, card)
    if ws.ray is not None:  # the same shards, encoded by Ray actors (pyserini_ext.distributed)
        from pyserini_ext.distributed.encoding import encode_store

        encode_store(card, ws.dataset.docs(), folder, address=ws.ray, quiet=ws.quiet, built_from=ws.built_from(card))
        return folder
    encode[card.family.store](ws.dataset.docs(), card.document_encoder(), folder, quiet=ws.quiet,
                              built_from=ws.built_from(card), total=corpus_size(ws))
    return folder


# --- BM25 (Lucene via Anserini) -------------------------------------------------------

@dataclass(frozen=True)
class Bm25Params:
    k1: float = 0.9  # Anserini's defaults
    b: float = 0.4


def bm25_index_dir(ws: Workspace) -> Path:
    return ws.root("lucene-flat")


def bm25_index(ws: Workspace) -> Path:
    from pyserini_ext.index.lucene import build_lucene_index

    return build_lucene_index(ws.dataset.docs(), bm25_index_dir(ws), quiet=ws.quiet, built_from=ws.built_from(),
                              total=corpus_size(ws))


def build_bm25(params: Bm25Params, ws: Workspace):
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(bm25_index(ws)))
    searcher.set_bm25(params.k1, params.b)
    return searcher


SEARCHERS.register("bm25", SearcherType("bm25", Bm25Params, build_bm25))


# --- Dense (FAISS) -------------------------------------------------------------------

@dataclass(frozen=True)
class DenseParams:
    encoder: str = "all-minilm-l6-v2"  # an encoder card
    index: str = "flat"  # flat | flat-fp16 | hnsw
    score_precision: str = "float32"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 1000


def dense_index_dir(ws: Workspace, params: DenseParams) -> Path:
    return ws.root(params.encoder) / params.index


def dense_index(ws: Workspace, params: DenseParams) -> Path:
    """The FAISS index of ``params.encoder`` over the workspace's corpus, built if missing or stale."""
    from pyserini_ext.index.dense import build_dense_index

    card = _load_card(params.encoder)
    shards = encoded_store(ws, card)
    hnsw = {"hnsw_m": params.hnsw_m, "ef_construction": params.ef_construction} if params.index == "hnsw" else {}
    return build_dense_index(shards, dense_index_dir(ws, params), params.index,
                             built_from=ws.built_from(card, index=params.index, **hnsw), **hnsw)


def build_dense(params: DenseParams, ws: Workspace):
    from pyserini_ext.search.dense import DenseSearcher

    searcher = DenseSearcher(dense_index(ws, params), _load_card(params.encoder).query_encoder(),
                             tie_policy=ws.ties.policy, seed=ws.ties.seed, score_precision=params.score_precision)
    if params.index == "hnsw":
        searcher.set_hnsw_ef_search(params.ef_search)
    return searcher


SEARCHERS.register("dense", SearcherType("dense", DenseParams, build_dense))


# --- Pyserini's prebuilt dense indexes: a reproduction's last-metre condition ------------------

@dataclass(frozen=True)
class PrebuiltDenseParams:
    index: str = ""  # a name in Pyserini's FAISS_INDEX_INFO, e.g. msmarco-v1-passage.tct_colbert-v2-hnp
    encoder: str = ""  # an encoder card that encodes the queries here, or
    encoded_queries: str = ""  # a name in Pyserini's QUERY_INFO: the queries as the authors encoded them


def build_prebuilt_dense(params: PrebuiltDenseParams, ws: Workspace):
    """Pyserini's prebuilt index of the corpus (not encoded here: the workspace's corpus is
    never read), searched with a card's query encoder or the authors' pre-encoded queries.
    Every missing artefact is named in one error."""
    from pyserini_ext.index.prebuilt import PrebuiltNotFoundError, encoded_query_encoder, prebuilt_faiss_index
    from pyserini_ext.search.dense import DenseSearcher

    if not params.index or bool(params.encoder) == bool(params.encoded_queries):
        raise ValueError("prebuilt-dense needs index (Pyserini's prebuilt FAISS index name) and exactly one of "
                         "encoder (a card) or encoded_queries (Pyserini's pre-encoded queries name)")
    found, missing = {}, []
    for key, fetch in (("index", lambda: prebuilt_faiss_index(params.index)),
                       ("queries", lambda: encoded_query_encoder(params.encoded_queries) if params.encoded_queries
                        else _load_card(params.encoder).query_encoder())):
        try:
            found[key] = fetch()
        except PrebuiltNotFoundError as e:
            missing.append(str(e))
    if missing:
        raise PrebuiltNotFoundError("; and ".join(missing))
    return DenseSearcher(found["index"], found["queries"], tie_policy=ws.ties.policy, seed=ws.ties.seed)


SEARCHERS.register("prebuilt-dense", SearcherType("prebuilt-dense", PrebuiltDenseParams, build_prebuilt_dense))


# --- Learned sparse (impact) search through Lucene ------------------------------------------

@dataclass(frozen=True)
class ImpactParams:
    encoder: str = "splade-tiny"  # a card whose family stores impacts (SPLADE)


def build_impact(params: ImpactParams, ws: Workspace):
    from pyserini.search.lucene import LuceneImpactSearcher

    from pyserini_ext.index.impact import build_impact_index

    card = _load_card(params.encoder)
    if card.family.store != "impacts":
        raise ValueError(f"impact search needs a card whose family stores impacts; {card.name!r} is "
                         f"{card.family.name!r} ({card.family.store})")
    root = encoded_store(ws, card)
    index_dir = build_impact_index(root, root.with_name("lucene-impact"), built_from=ws.built_from(card))
    # min_idf=-1 keeps every query term the index has. Pyserini's default (0) silently drops
    # terms that occur in every document (idf = log(N/df) = 0), which changes the scores.
    return LuceneImpactSearcher(str(index_dir), card.query_encoder(), min_idf=-1)


SEARCHERS.register("impact", SearcherType("impact", ImpactParams, build_impact))


# --- Fusion of any registered searchers --------------------------------------------------

@dataclass(frozen=True)
class FusionParams:
    searchers: tuple = ()  # [{searcher: NAME, params: {...}}, ...]; for "hybrid": [sparse, dense]
    method: str = "rrf"  # hybrid | weighted | rrf
    depth: int = 1000  # hits asked of each input searcher (HybridSearcher's k0)
    alpha: float = 0.1  # hybrid: HybridSearcher's default
    normalization: bool = False
    weight_on_dense: bool = False
    weights: tuple | None = None  # weighted: one per searcher (default all 1)
    rrf_k: int = 60


def build_nested(sub, ws: Workspace, where: str):
    """A searcher named inside another's parameters: ``{searcher: NAME, params: {...}}``."""
    if not isinstance(sub, dict) or "searcher" not in sub or set(sub) - {"searcher", "params"}:
        raise ValueError(f"{where}: expected {{searcher: NAME, params: {{...}}}}, got {sub!r}")
    return build_searcher(sub["searcher"], sub.get("params") or {}, ws)


def build_fusion(params: FusionParams, ws: Workspace):
    from pyserini_ext.search.fusion import FusionSearcher

    inputs = [build_nested(sub, ws, f"fusion searchers[{i}]") for i, sub in enumerate(params.searchers)]
    return FusionSearcher(inputs, params.method, params.depth, params.alpha, params.normalization,
                          params.weight_on_dense, params.weights, params.rrf_k, ties=ws.ties)


SEARCHERS.register("fusion", SearcherType("fusion", FusionParams, build_fusion))


# --- Re-ranking a first stage from stored document representations ---------------------------

@dataclass(frozen=True)
class RerankParams:
    first_stage: Any = None  # {searcher: NAME, params: {...}}; default BM25
    depth: int = 1000  # candidates taken from the first stage
    encoder: str = "all-minilm-l6-v2"  # a card whose stored document representations re-score them


def rerank_stage(card, dataset, *, work: Path | str | None = None, ties: TieOrder | None = None, quiet: bool = True):
    """The stage that re-scores candidates with ``card`` (a card or its name) from its stored
    document representations over ``dataset`` (encoded first if missing or stale)."""
    ws = workspace(dataset, work, ties, quiet)
    return _rerank_stage(_load_card(card) if isinstance(card, str) else card, ws)


def _rerank_stage(card, ws: Workspace):
    from pyserini_ext.search.rerank import DenseRerank, ImpactRerank, TokenRerank
    from pyserini_ext.store import ImpactStore, TokenStore, VectorStore

    root = encoded_store(ws, card)
    if card.family.store == "impacts":
        quantization = card.options.quantization
        return ImpactRerank(ImpactStore(root, quantization), card.query_encoder(), quantization, ties=ws.ties)
    if card.family.store == "vectors":
        return DenseRerank(VectorStore(root), card.query_encoder(), ties=ws.ties)
    if card.family.store == "tokens":
        return TokenRerank(TokenStore(root), card.query_encoder(), ties=ws.ties)
    raise ValueError(f"re-ranking from stored {card.family.store} is not implemented (card {card.name!r})")


def build_rerank(params: RerankParams, ws: Workspace):
    from pyserini_ext.search.rerank import Retrieve

    first = build_nested(params.first_stage or {"searcher": "bm25"}, ws, "rerank first_stage")
    return Retrieve(first, params.depth, ties=ws.ties) >> _rerank_stage(_load_card(params.encoder), ws)


SEARCHERS.register("rerank", SearcherType("rerank", RerankParams, build_rerank))


# --- Multi-vector (late interaction) -----------------------------------------------------

@dataclass(frozen=True)
class MultiVectorParams:
    encoder: str = "colbert-minilm-l6-v2"  # a card whose family stores tokens (ColBERT/XTR)
    # colbert (exact MaxSim) | xtr (retrieved scores + imputation) | ivf (centroids -> MaxSim) |
    # warp, plaid (engines over the compressed index: search/compressed.py)
    scorer: str = "colbert"
    token_index: str = "flat"  # colbert/xtr: flat | ivf (ivf always uses the IVF index)
    k_prime: int = 100  # colbert/xtr: tokens retrieved per query token
    nprobe: int = 4  # clusters probed per query token (IVF indexes)
    nlist: int = 1024  # k-means centroids of the IVF index
    ndocs: int = 1000  # ivf: documents kept by centroid interaction for exact MaxSim
    imputation: str = "min"  # xtr: min | zero | mean | p10 | power
    combine: str = "max"  # xtr: max (XTR's equation: max(best retrieved, m_i)) | retrieved (best retrieved as is)
    nbits: int = 2  # warp/plaid: bits per residual dimension (2 or 4)
    t_prime: int = 10_000  # warp: tokens whose lists set each query token's missing similarity
    centroid_threshold: float = 0.45  # plaid: centroids scoring below it are pruned in the first pass
    rescore: str = "none"  # warp/plaid: none | exact (exact MaxSim of the best rescore_depth from the token store)
    rescore_depth: int = 1000


COMPRESSED_SCORERS = ("warp", "plaid")  # engines over the compressed index, not a FAISS token index


def token_store_dir(ws: Workspace, encoder: str) -> Path:
    return store_dir(ws, _load_card(encoder))


def build_multivector(params: MultiVectorParams, ws: Workspace):
    from pyserini_ext.index.multivector import build_token_index, read_token_index
    from pyserini_ext.store import TokenStore
    from pyserini_ext.search.multivector import ColbertSearcher, IvfSearcher, XtrSearcher

    scorers = {"colbert": ColbertSearcher, "xtr": XtrSearcher, "ivf": IvfSearcher}
    if params.scorer not in (*scorers, *COMPRESSED_SCORERS):
        raise ValueError(f"scorer must be one of {', '.join((*scorers, *COMPRESSED_SCORERS))}, got {params.scorer!r}")
    card = _load_card(params.encoder)
    if card.family.store != "tokens":
        raise ValueError(f"multi-vector search needs a card whose family stores tokens; {card.name!r} is "
                         f"{card.family.name!r} ({card.family.store})")
    root = encoded_store(ws, card)
    store = TokenStore(root)
    if params.scorer in COMPRESSED_SCORERS:
        return _compressed_searcher(params, ws, card, store, root)
    kind = "ivf" if params.scorer == "ivf" else params.token_index
    name = "flat.faiss" if kind == "flat" else f"ivf{params.nlist}.faiss"
    index = read_token_index(build_token_index(store, root.with_name(name), kind, params.nlist,
                                               built_from=ws.built_from(card, kind=kind, nlist=params.nlist)))
    encoder, ties = card.query_encoder(), {"tie_policy": ws.ties.policy, "seed": ws.ties.seed}
    if params.scorer == "ivf":
        return IvfSearcher(store, index, encoder, params.nprobe, params.ndocs, **ties)
    if params.scorer == "xtr":
        return XtrSearcher(store, index, encoder, params.k_prime, params.nprobe, params.imputation, **ties,
                           combine=params.combine)
    return ColbertSearcher(store, index, encoder, params.k_prime, params.nprobe, **ties)


def _compressed_searcher(params: MultiVectorParams, ws: Workspace, card, store, root: Path):
    from pyserini_ext.index.compressed import build_compressed_index
    from pyserini_ext.search.compressed import PlaidSearcher, WarpSearcher
    from pyserini_ext.store.compressed import CompressedIndex

    folder = root.with_name(f"compressed{params.nlist}-{params.nbits}bit")
    index = CompressedIndex(build_compressed_index(
        store, folder, params.nlist, params.nbits,
        built_from=ws.built_from(card, kind="compressed", nlist=params.nlist, nbits=params.nbits)))
    options = {"rescore": params.rescore, "rescore_depth": params.rescore_depth, "tokens": store,
               "tie_policy": ws.ties.policy, "seed": ws.ties.seed}
    if params.scorer == "warp":
        return WarpSearcher(index, card.query_encoder(), params.nprobe, params.t_prime, **options)
    return PlaidSearcher(index, card.query_encoder(), params.nprobe, params.ndocs, params.centroid_threshold,
                         **options)


SEARCHERS.register("multivector", SearcherType("multivector", MultiVectorParams, build_multivector))
