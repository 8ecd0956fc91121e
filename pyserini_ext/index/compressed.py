"""Build a compressed late-interaction index (:mod:`pyserini_ext.store.compressed`) from a
token store: k-means centroids and bucket cutoffs trained on a seeded sample of the store's
token vectors, then every token compressed block by block (the store stays memory-mapped;
the residuals are written through memory maps, so memory stays at a few blocks whatever
the corpus size)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pyserini_ext.store import TokenStore, ensure_built
from pyserini_ext.store.compressed import KIND, ResidualCodec

log = logging.getLogger(__name__)


def build_compressed_index(store: TokenStore | Path | str, path: Path | str, nlist: int = 1024, nbits: int = 2,
                           train_tokens: int = 131072, seed: int = 0, built_from: dict | None = None) -> Path:
    """The compressed index of ``store`` in the folder ``path`` (reused when current: same
    ``built_from``, same store, same parameters)."""
    if not isinstance(store, TokenStore):
        store = TokenStore(store)
    if nlist > np.iinfo(np.uint16).max + 1:
        raise ValueError(f"nlist must be at most 65536 (codes are stored as uint16), got {nlist}")
    params = {"kind": "compressed", "nlist": nlist, "nbits": nbits, "train_tokens": train_tokens, "seed": seed}
    identity = {**(built_from or {}), "source": store.digest, "builder": params}

    def build(partial: Path) -> dict:
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(store.num_tokens, min(train_tokens, store.num_tokens), replace=False))
        codec = ResidualCodec.train(store.gather(sample), nlist, nbits, seed)
        for name in ("centroids", "cutoffs", "weights"):
            np.save(partial / f"{name}.npy", getattr(codec, name))
        codes = np.lib.format.open_memmap(partial / "codes.npy", "w+", np.uint16, (store.num_tokens,))
        # Residuals in token order first (a scratch file), then permuted into centroid order.
        scratch = np.lib.format.open_memmap(partial / "residuals.scratch.npy", "w+", np.uint8,
                                            (store.num_tokens, codec.packed_width))
        start = 0
        for block in store.iter_token_blocks():
            block_codes, packed = codec.compress(block)
            codes[start:start + len(block)], scratch[start:start + len(block)] = block_codes, packed
            start += len(block)
        order = np.argsort(codes, kind="stable")
        residuals = np.lib.format.open_memmap(partial / "residuals.npy", "w+", np.uint8,
                                              (store.num_tokens, codec.packed_width))
        step = 1 << 18
        for begin in range(0, len(order), step):
            residuals[begin:begin + step] = scratch[order[begin:begin + step]]
        codes.flush(), residuals.flush()
        del codes, residuals, scratch
        (partial / "residuals.scratch.npy").unlink()
        np.save(partial / "lengths.npy", store.lengths.astype(np.int32))
        (partial / "docids.txt").write_text("".join(f"{d}\n" for d in store.docids), encoding="utf-8")
        log.info("compressed index %s: %d tokens, %d centroids, %d-bit residuals", path, store.num_tokens, nlist, nbits)
        return {"kind": KIND, "count": store.num_docs, "dims": [store.dim], "dtype": f"uint8 ({nbits}-bit residuals)",
                "docids": (store.docids[0], store.docids[-1]), "hashes": True,
                "extra": {"nbits": nbits, "nlist": nlist, "tokens": store.num_tokens}}

    return ensure_built(path, identity, build, "compressed token index")
