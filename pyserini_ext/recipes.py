"""Named first-stage searchers that a regression spec (or the CLI) can build from data.

Each entry knows its parameters (a dataclass with defaults: an unknown key is an
error) and how to build its index for a dataset under a work folder (reusing one
that exists) and open a searcher on it. The CLI's ``index`` and ``search`` verbs and
the regression runner all go through here. Other packages add searchers through the
entry-point group ``pyserini_ext.searchers``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pyserini_ext.data.datasets import Dataset
from pyserini_ext.registry import Registry


@dataclass(frozen=True)
class SearcherType:
    name: str
    params: type  # dataclass of parameters with defaults
    # (dataset, params, workdir, quiet) -> searcher with Pyserini's batch_search; builds
    # the index under workdir first unless it is already there.
    build: Callable[[Dataset, Any, Path, bool], Any]

    def parse_params(self, raw: dict) -> Any:
        known = {f.name for f in dataclasses.fields(self.params)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise KeyError(f"unknown parameter {unknown[0]!r} for searcher {self.name!r}; known: {', '.join(sorted(known))}")
        return self.params(**raw)


SEARCHERS: Registry[SearcherType] = Registry("searcher", "pyserini_ext.searchers")


def slug(dataset: Dataset) -> str:
    return dataset.name.replace("/", "-")


# --- BM25 (Lucene via Anserini) -------------------------------------------------------

@dataclass(frozen=True)
class Bm25Params:
    k1: float = 0.9  # Anserini's defaults
    b: float = 0.4


def bm25_index_dir(dataset: Dataset, workdir: Path) -> Path:
    return workdir / "indexes" / f"{slug(dataset)}.lucene-flat"


def build_bm25(dataset: Dataset, params: Bm25Params, workdir: Path, quiet: bool = False):
    from pyserini.search.lucene import LuceneSearcher

    from pyserini_ext.index.lucene import build_lucene_index

    index_dir = build_lucene_index(dataset.docs(), bm25_index_dir(dataset, workdir), quiet=quiet)
    searcher = LuceneSearcher(str(index_dir))
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


def dense_shards_dir(dataset: Dataset, params: DenseParams, workdir: Path) -> Path:
    return workdir / "indexes" / f"{slug(dataset)}.{params.encoder}" / "shards"


def dense_index_dir(dataset: Dataset, params: DenseParams, workdir: Path) -> Path:
    return workdir / "indexes" / f"{slug(dataset)}.{params.encoder}" / params.index


def _encode_once(folder: Path, encode: Callable[[], Any]) -> Path:
    """Run ``encode`` (a resumable corpus encoding into ``folder``) unless it already completed.

    The ``complete`` marker is written only after the last shard, so an interrupted
    encoding resumes from its finished shards on the next call.
    """
    if not (folder / "complete").exists():
        encode()
        (folder / "complete").touch()
    return folder


def _encode_dense(dataset: Dataset, card, shards: Path, quiet: bool) -> Path:
    from pyserini_ext.index.dense import encode_corpus

    return _encode_once(shards, lambda: encode_corpus(dataset.docs(), card.document_encoder(), shards, quiet=quiet))


def _encode_impacts(dataset: Dataset, card, root: Path, quiet: bool) -> Path:
    from pyserini_ext.index.impact import encode_impact_corpus

    return _encode_once(root, lambda: encode_impact_corpus(dataset.docs(), card.document_encoder(), root, quiet=quiet))


def build_dense(dataset: Dataset, params: DenseParams, workdir: Path, quiet: bool = False):
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.index.dense import build_dense_index
    from pyserini_ext.search.dense import DenseSearcher

    card = load_card(params.encoder)
    index_dir = dense_index_dir(dataset, params, workdir)
    if not (index_dir / "index").exists():
        shards = _encode_dense(dataset, card, dense_shards_dir(dataset, params, workdir), quiet)
        hnsw = {"hnsw_m": params.hnsw_m, "ef_construction": params.ef_construction} if params.index == "hnsw" else {}
        build_dense_index(shards, index_dir, params.index, **hnsw)
    searcher = DenseSearcher(index_dir, card.query_encoder(), score_precision=params.score_precision)
    if params.index == "hnsw":
        searcher.set_hnsw_ef_search(params.ef_search)
    return searcher


SEARCHERS.register("dense", SearcherType("dense", DenseParams, build_dense))


# --- Learned sparse (impact) search through Lucene ------------------------------------------

@dataclass(frozen=True)
class ImpactParams:
    encoder: str = "splade-tiny"  # a SPLADE-family card


def impact_root(dataset: Dataset, params: ImpactParams, workdir: Path) -> Path:
    return workdir / "indexes" / f"{slug(dataset)}.{params.encoder}" / "impact-encoded"


def build_impact(dataset: Dataset, params: ImpactParams, workdir: Path, quiet: bool = False):
    from pyserini.search.lucene import LuceneImpactSearcher

    from pyserini_ext.encode.base import load_card
    from pyserini_ext.index.impact import build_impact_index

    card = load_card(params.encoder)
    root = impact_root(dataset, params, workdir)
    index_dir = root.with_name("lucene-impact")
    if not any(index_dir.glob("segments_*")):
        build_impact_index(_encode_impacts(dataset, card, root, quiet), index_dir)
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


def build_nested(dataset: Dataset, sub, workdir: Path, quiet: bool, where: str):
    """A searcher named inside another's parameters: ``{searcher: NAME, params: {...}}``."""
    if not isinstance(sub, dict) or "searcher" not in sub or set(sub) - {"searcher", "params"}:
        raise ValueError(f"{where}: expected {{searcher: NAME, params: {{...}}}}, got {sub!r}")
    kind = SEARCHERS.get(sub["searcher"])
    return kind.build(dataset, kind.parse_params(sub.get("params") or {}), workdir, quiet)


def build_fusion(dataset: Dataset, params: FusionParams, workdir: Path, quiet: bool = False):
    from pyserini_ext.search.fusion import FusionSearcher

    inputs = [build_nested(dataset, sub, workdir, quiet, f"fusion searchers[{i}]")
              for i, sub in enumerate(params.searchers)]
    return FusionSearcher(inputs, params.method, params.depth, params.alpha, params.normalization,
                          params.weight_on_dense, params.weights, params.rrf_k)


SEARCHERS.register("fusion", SearcherType("fusion", FusionParams, build_fusion))


# --- Re-ranking a first stage from stored vectors -------------------------------------------

@dataclass(frozen=True)
class RerankParams:
    first_stage: Any = None  # {searcher: NAME, params: {...}}; default BM25
    depth: int = 1000  # candidates taken from the first stage
    encoder: str = "all-minilm-l6-v2"  # a dense or SPLADE card whose stored document representations re-score them


def build_rerank(dataset: Dataset, params: RerankParams, workdir: Path, quiet: bool = False):
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.search.rerank import DenseRerank, ImpactRerank, Retrieve, StoredImpacts, StoredVectors

    first = build_nested(dataset, params.first_stage or {"searcher": "bm25"}, workdir, quiet, "rerank first_stage")
    card = load_card(params.encoder)
    if card.family.name == "splade":
        root = impact_root(dataset, ImpactParams(params.encoder), workdir)
        _encode_impacts(dataset, card, root, quiet)
        quantization = card.options.quantization
        stage = ImpactRerank(StoredImpacts(root, quantization), card.query_encoder(), quantization)
    else:
        shards = _encode_dense(dataset, card, dense_shards_dir(dataset, DenseParams(encoder=params.encoder), workdir),
                               quiet)
        stage = DenseRerank(StoredVectors(shards), card.query_encoder())
    return Retrieve(first, params.depth) >> stage


SEARCHERS.register("rerank", SearcherType("rerank", RerankParams, build_rerank))


# --- Multi-vector (late interaction) -----------------------------------------------------

@dataclass(frozen=True)
class MultiVectorParams:
    encoder: str = "colbert-minilm-l6-v2"  # a colbert-family card
    scorer: str = "colbert"  # colbert (exact MaxSim) | xtr (retrieved scores + imputation) | ivf (centroids -> MaxSim)
    token_index: str = "flat"  # colbert/xtr: flat | ivf (ivf always uses the IVF index)
    k_prime: int = 100  # colbert/xtr: tokens retrieved per query token
    nprobe: int = 4  # clusters probed per query token (IVF indexes)
    nlist: int = 1024  # k-means centroids of the IVF index
    ndocs: int = 1000  # ivf: documents kept by centroid interaction for exact MaxSim
    imputation: str = "min"  # xtr: min | zero | mean | p10 | power


def token_store_dir(dataset: Dataset, encoder: str, workdir: Path) -> Path:
    return workdir / "indexes" / f"{slug(dataset)}.{encoder}" / "tokens"


def build_multivector(dataset: Dataset, params: MultiVectorParams, workdir: Path, quiet: bool = False):
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.index.multivector import TokenStore, build_token_index, encode_token_corpus, read_token_index
    from pyserini_ext.search.multivector import ColbertSearcher, IvfSearcher, XtrSearcher

    scorers = {"colbert": ColbertSearcher, "xtr": XtrSearcher, "ivf": IvfSearcher}
    if params.scorer not in scorers:
        raise ValueError(f"scorer must be one of {', '.join(scorers)}, got {params.scorer!r}")
    card = load_card(params.encoder)
    root = token_store_dir(dataset, params.encoder, workdir)
    _encode_once(root, lambda: encode_token_corpus(dataset.docs(), card.document_encoder(), root, quiet=quiet))
    store = TokenStore(root)
    kind = "ivf" if params.scorer == "ivf" else params.token_index
    name = "flat.faiss" if kind == "flat" else f"ivf{params.nlist}.faiss"
    index = read_token_index(build_token_index(store, root.with_name(name), kind, params.nlist))
    encoder = card.query_encoder()
    if params.scorer == "ivf":
        return IvfSearcher(store, index, encoder, params.nprobe, params.ndocs)
    if params.scorer == "xtr":
        return XtrSearcher(store, index, encoder, params.k_prime, params.nprobe, params.imputation)
    return ColbertSearcher(store, index, encoder, params.k_prime, params.nprobe)


SEARCHERS.register("multivector", SearcherType("multivector", MultiVectorParams, build_multivector))
