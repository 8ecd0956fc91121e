"""Distributed encoding: the single-process shard loop, with the shards encoded by Ray actors.

The driver runs :func:`pyserini_ext.store.shards.encode_in_shards` as a single process does:
it reads the corpus ``shard_size`` documents at a time, so the shard ranges are the same; it
keeps every shard already finished (resume) or linkable from the previous build; it writes the
manifest. Only the shards still to encode go to :class:`EncoderActor`\\ s (one per GPU, or one
per CPU slot), each of which builds the card's document encoder once and runs the same
:func:`~pyserini_ext.store.shards.encode_shard` into the same folder: the same files, the same
bytes (FP32; an INT8 ONNX encoder's activation scales depend on the batch, and the batches are
the same here too, but byte identity is only tested for FP32).

An actor that dies mid-shard is restarted by Ray and the shard is redone from the start (its
files are written atomically and the finished mark last, so half a shard is never taken for a
whole one, and a shard is written once per success, never twice over another's).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Iterable

from pyserini_ext.distributed import connect, worker_slots

log = logging.getLogger(__name__)

# Restarts of one encoder actor (and retries of the shard it was on) before the build fails.
MAX_RESTARTS = 3


class EncoderWorker:
    """One card's document encoder in a Ray actor: encodes whole shards into a shard folder."""

    def __init__(self, card_name: str, threads: int = 0):
        from pyserini_ext.encode.base import load_card
        from pyserini_ext.encode.runtime import set_cpu_threads
        from pyserini_ext.store.shards import SHARD_CODECS

        set_cpu_threads(threads)  # the actor's CPU slots (Ray pins them), not the machine's cores
        card = load_card(card_name)
        self.layout, codec = SHARD_CODECS[card.family.store]
        self.encode, self.write = codec(card.document_encoder())
        self.current, self.encoded = None, 0  # the shard in hand, documents of it encoded so far

    def _tick(self, n: int) -> None:
        self.encoded += n

    def encode_shard(self, root: str, i: int, chunk, digest: str, progress_every: int) -> tuple[int, dict]:
        from pyserini_ext.store.shards import encode_shard

        self.current, self.encoded = i, 0
        try:
            return i, encode_shard(Path(root), self.layout, i, chunk, digest, self.encode, self.write,
                                   progress_every, self._tick)
        finally:
            self.current = None

    def progress(self) -> tuple[int | None, int, int]:
        """(shard in hand or None, its documents encoded so far, this process's id)."""
        return self.current, self.encoded, os.getpid()


class EncoderPool:
    """``workers`` encoder actors for ``card_name``; at most one shard in flight per actor, so the
    driver holds at most ``workers`` shards of documents in memory."""

    def __init__(self, card_name: str, workers: int | None = None, address: str | None = None):
        ray = self.ray = connect(address)
        slots, kind = worker_slots(ray)
        self.workers = workers or slots
        options = {"num_gpus": 1, "num_cpus": 1} if kind == "GPU" else {"num_cpus": 1}
        # max_concurrency=2: progress() answers while encode_shard runs (the pool never sends an
        # actor a second shard before the first comes back).
        actor = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS, max_concurrency=2,
                           **options)(EncoderWorker)
        self._start = lambda: [actor.remote(card_name, 1 if kind == "CPU" else 0) for _ in range(self.workers)]
        self.actors: list = []  # started by start(), on the first shard: a current store needs none
        self.idle: list = []
        self.in_flight: dict = {}  # object ref -> (actor, shard, its document count)
        self.marks: dict[int, dict] = {}
        self.progress: Callable[[int], object] | None = None
        log.info("encoding %s with %d Ray %s worker(s) when a shard needs it", card_name, self.workers, kind)

    def start(self) -> "EncoderPool":
        """Start the actors (each loads the card's encoder), unless started."""
        if not self.actors:
            self.actors = self._start()
            self.idle = list(self.actors)
        return self

    def submit(self, root: Path, i: int, chunk: list, digest: str, progress_every: int,
               progress: Callable[[int], object] | None = None) -> None:
        """Encode shard ``i`` (``chunk``) into ``root`` on the next free actor (waiting for one);
        ``progress(n)`` is called with each shard's document count as it comes back."""
        self.progress = progress or self.progress
        self.start()
        while not self.idle:
            self._collect(1)
        actor = self.idle.pop()
        ref = actor.encode_shard.remote(str(root), i, chunk, digest, progress_every)
        self.in_flight[ref] = (actor, i, len(chunk))

    def _collect(self, at_least: int) -> None:
        ready, _ = self.ray.wait(list(self.in_flight), num_returns=min(at_least, len(self.in_flight)))
        for ref in ready:
            actor, i, n = self.in_flight.pop(ref)
            try:
                shard, mark = self.ray.get(ref)
            except Exception as error:
                raise RuntimeError(f"encoding shard {i} failed on a Ray worker: {error}") from error
            self.marks[shard] = mark
            self.idle.append(actor)
            if self.progress is not None:
                self.progress(n)

    def finish(self) -> dict[int, dict]:
        """Wait for every shard in flight; ``{shard: finished mark}`` of the shards submitted since
        the last ``finish`` (a pool may encode several folders, one after another)."""
        while self.in_flight:
            self._collect(len(self.in_flight))
        marks, self.marks, self.progress = self.marks, {}, None
        return marks

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors, self.idle = [], []


def encode_store(card, docs: Iterable, folder: Path | str, *, address: str | None = None, workers: int | None = None,
                 quiet: bool = False, built_from: dict | None = None, pool: EncoderPool | None = None,
                 **options) -> Path:
    """The card's document store (``card.family.store``: vectors, tokens or impacts) of ``docs``
    in ``folder``, encoded by Ray actors: the same folder, files and bytes as the single-process
    ``encode_corpus``/``encode_token_corpus``/``encode_impact_corpus`` with the same ``options``
    (``shard_size``, ``progress_every``). ``pool``: encoder actors of ``card`` to use (and keep)
    instead of new ones (``address`` and ``workers`` then unused)."""
    from pyserini_ext.store.shards import encode_corpus, encode_impact_corpus, encode_token_corpus

    own = pool is None
    pool = pool or EncoderPool(card.name, workers, address)
    try:
        if card.family.store == "vectors":
            return encode_corpus(docs, None, folder, quiet=quiet, built_from=built_from, pool=pool, **options)
        if card.family.store == "tokens":
            return encode_token_corpus(docs, None, folder, quiet=quiet, built_from=built_from, pool=pool, **options)
        if card.family.store == "impacts":
            return encode_impact_corpus(docs, None, folder, quiet=quiet, built_from=built_from, pool=pool,
                                        quantization=card.options.quantization, **options)
        raise ValueError(f"card {card.name!r}: no distributed encoding for store {card.family.store!r}")
    finally:
        if own:
            pool.close()
