"""Late-interaction (multi-vector) encoders: one L2-normalised vector per token, as in
ColBERT (Khattab & Zaharia, 2020; ColBERTv2) and XTR (Lee et al., 2023).

Input conventions, all configurable on the card:

* markers (``marker_style``): ``token`` puts one marker token after ``[CLS]``
  (ColBERT's ``[unused0]`` / ``[unused1]``); ``text`` prefixes marker *text* that
  tokenises to several pieces (TCT-ColBERT's ``[Q]`` is ``[``, ``q``, ``]``); ``none``
  adds nothing (XTR);
* optional prompts per side, prepended to the text (ColBERT-Zero: prompts must match
  pre-training);
* queries are padded with ``[MASK]`` to ``query_length`` (32) and truncated there
  (ColBERT's query augmentation); the ``[MASK]`` positions are not attended to unless
  ``attend_to_mask_tokens``, but their outputs are query vectors all the same;
* documents are cut at ``doc_length`` (300) word pieces and their punctuation tokens
  dropped (``skip_punctuation``), as ColBERT's skiplist does;
* a linear projection (ColBERT's ``linear``, usually 128-d) is loaded from the
  checkpoint when it has one (``linear.weight`` in the weights, or a PyLate
  ``1_Dense`` module); a plain encoder such as all-MiniLM-L6-v2 runs without one
  (zero-shot, hidden size 384).

Query encoders return a ``query_length x dim`` array per query; document encoders a
list of ``tokens x dim`` arrays (float32), one per document.
"""

from __future__ import annotations

import dataclasses
import logging
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pyserini.encode import DocumentEncoder, QueryEncoder
from transformers import AutoModel, AutoTokenizer

from pyserini_ext import scores
from pyserini_ext.encode.base import EncoderFamily, from_pretrained
from pyserini_ext.encode.runtime import RuntimeOptions, build_graph, example_inputs, iter_batches
from pyserini_ext.train.models import Trainable, as_tensors
from pyserini_ext.schema import checked

log = logging.getLogger(__name__)

MARKER_STYLES = ("token", "text", "none")


@dataclass(frozen=True)
class ColbertOptions(RuntimeOptions):
    marker_style: str = "token"  # token | text | none
    query_marker: str = "[unused0]"
    doc_marker: str = "[unused1]"
    query_prompt: str = ""
    doc_prompt: str = ""
    query_length: int = checked(32, ge=1)  # fixed: [MASK]-augmented to it
    doc_length: int = checked(300, ge=1)
    attend_to_mask_tokens: bool = False
    skip_punctuation: bool = True
    projection: bool = True  # use the checkpoint's linear projection when it has one

    def __post_init__(self):
        super().__post_init__()
        if self.marker_style not in MARKER_STYLES:
            raise ValueError(f"marker_style must be one of {MARKER_STYLES}, got {self.marker_style!r}")


class TokenVectors(torch.nn.Module):
    """Transformer, optional linear projection, L2 normalisation: batch x length x dim."""

    def __init__(self, transformer: torch.nn.Module, linear: torch.nn.Linear | None):
        super().__init__()
        self.transformer, self.linear = transformer, linear

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.linear is not None:
            hidden = self.linear(hidden)
        return torch.nn.functional.normalize(hidden, p=2, dim=-1)


def load_projection(model: str, hidden: int) -> torch.nn.Linear | None:
    """The checkpoint's linear projection, if it ships one (ColBERT or PyLate layout)."""
    from safetensors.torch import load_file

    root = Path(model)
    candidates = [root / "1_Dense" / "model.safetensors", root / "model.safetensors"]
    for path in candidates:
        if not path.is_file():
            continue
        state = load_file(str(path))
        weight = state.get("linear.weight")
        if weight is not None and weight.shape[1] == hidden:
            linear = torch.nn.Linear(hidden, weight.shape[0], bias="linear.bias" in state)
            linear.load_state_dict({k.removeprefix("linear."): v for k, v in state.items() if k.startswith("linear.")})
            log.info("loaded a %d -> %d projection from %s", hidden, weight.shape[0], path)
            return linear
    return None


class ColbertModel:
    """Tokenizer + token-vector graph, with ColBERT's marker, augmentation and skiplist rules."""

    def __init__(self, model: str, options: ColbertOptions):
        self.options = options
        self.tokenizer = from_pretrained(AutoTokenizer, model)
        transformer = from_pretrained(AutoModel, model)
        hidden = transformer.config.hidden_size
        linear = load_projection(model, hidden) if options.projection else None
        if options.projection and linear is None:
            log.info("%s has no projection; token vectors keep the hidden size %d", model, hidden)
        self.dim = linear.out_features if linear is not None else hidden
        self.graph = build_graph(TokenVectors(transformer, linear), f"colbert-{'proj' if linear else 'noproj'}",
                                 example_inputs(self.tokenizer), options)
        t = self.tokenizer
        # A punctuation character missing from the vocabulary converts to [UNK]; skipping [UNK]
        # would drop real (unknown) words, so it is left out. (BERT vocabularies have them all.)
        ids = {t.convert_tokens_to_ids(p) for p in string.punctuation}
        ids |= {i for p in string.punctuation for i in t(p, add_special_tokens=False)["input_ids"]}
        self.skiplist = np.array(sorted(ids - {t.unk_token_id}))

    def marker_ids(self, marker: str) -> list[int]:
        style = self.options.marker_style
        if style == "none":
            return []
        if style == "token":
            ids = self.tokenizer.convert_tokens_to_ids([marker])
            if ids[0] == self.tokenizer.unk_token_id:
                raise ValueError(f"marker {marker!r} is not a token of this vocabulary; use marker_style 'text'")
            return ids
        return self.tokenizer(marker, add_special_tokens=False)["input_ids"]

    def token_ids(self, texts: list[str], marker: str, prompt: str, length: int, augment: bool) -> dict[str, np.ndarray]:
        """``[CLS] marker prompt+text [SEP]``, cut at ``length``; queries [MASK]-padded to ``length``."""
        t = self.tokenizer
        head = [t.cls_token_id, *self.marker_ids(marker)]
        body = t([prompt + text for text in texts], add_special_tokens=False, truncation=True,
                 max_length=length - len(head) - 1)["input_ids"]
        rows = [head + ids + [t.sep_token_id] for ids in body]
        width = length if augment else max(len(r) for r in rows)
        input_ids = np.full((len(rows), width), t.mask_token_id if augment else t.pad_token_id, dtype=np.int64)
        attention = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, :len(row)] = row
            attention[i, :len(row)] = 1
        if augment and self.options.attend_to_mask_tokens:
            attention[:] = 1
        return {"input_ids": input_ids, "attention_mask": attention}

    def queries(self, queries: list[str]) -> np.ndarray:
        o = self.options
        out = np.empty((len(queries), o.query_length, self.dim), dtype=np.float32)
        for idx, _, vectors in iter_batches(
                queries, lambda batch: self.token_ids(batch, o.query_marker, o.query_prompt, o.query_length, True),
                self.graph, o.batch_size):
            out[idx] = vectors
        return out

    def documents(self, texts: list[str]) -> list[np.ndarray]:
        o = self.options
        out: list[np.ndarray | None] = [None] * len(texts)
        for idx, inputs, vectors in iter_batches(
                texts, lambda batch: self.token_ids(batch, o.doc_marker, o.doc_prompt, o.doc_length, False),
                self.graph, o.batch_size):
            keep = self.keep_mask(inputs)
            for row, i in enumerate(idx):
                out[i] = vectors[row][keep[row]]
        return out

    def keep_mask(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Document positions that become vectors: real tokens, minus punctuation when skipping it."""
        keep = inputs["attention_mask"].astype(bool)
        if self.options.skip_punctuation:
            keep &= ~np.isin(inputs["input_ids"], self.skiplist)
        return keep


class ColbertQueryEncoder(QueryEncoder):
    def __init__(self, model: str, options: ColbertOptions = ColbertOptions()):
        super().__init__()
        self.options = options
        self.net = ColbertModel(model, options)
        self.has_model = True

    def encode(self, query: str) -> np.ndarray:
        return self.encode_batch([query])[0]

    def encode_batch(self, queries: list[str]) -> np.ndarray:
        return self.net.queries(queries)


class ColbertDocumentEncoder(DocumentEncoder):
    def __init__(self, model: str, options: ColbertOptions = ColbertOptions()):
        self.options = options
        self.net = ColbertModel(model, options)

    @property
    def dim(self) -> int:
        return self.net.dim

    def encode(self, texts: list[str], titles: list[str] | None = None, **kwargs) -> list[np.ndarray]:
        if titles is not None:
            texts = [f"{title} {text}".strip() for title, text in zip(titles, texts)]
        return self.net.documents(texts)


SCORERS = ("maxsim", "xtr")


class ColbertTrainable(Trainable):
    """Late interaction with the card's markers, [MASK] augmentation and punctuation
    skiplist; scored by exact MaxSim (``scorer`` ``maxsim``, the default), or by XTR's
    in-batch token retrieval (``xtr`` with ``k_train``), times ``scale``. Saved as a
    transformer checkpoint plus, when there is a projection, PyLate's ``1_Dense`` layout,
    which :func:`load_projection` reads back."""

    def __init__(self, options: ColbertOptions, model_path: str, *, scorer: str = "", k_train: int = 0,
                 scale: float = 1.0):
        super().__init__()
        scorer = scorer or "maxsim"
        if scorer not in SCORERS:
            raise ValueError(f"colbert scorer must be one of {SCORERS}, got {scorer!r}")
        if scorer == "xtr" and k_train <= 0:
            raise ValueError("the xtr scorer needs k_train > 0")
        self.net = ColbertModel(model_path, dataclasses.replace(options, backend="torch"))
        self.options, self.tokenizer, self.module = options, self.net.tokenizer, self.net.graph.module
        self.scorer, self.k_train, self.scale = scorer, k_train, scale

    def queries(self, texts: list[str]) -> dict[str, torch.Tensor]:
        o = self.options
        return as_tensors(self.net.token_ids(texts, o.query_marker, o.query_prompt, o.query_length, True))

    def documents(self, texts: list[str]) -> dict[str, torch.Tensor]:
        o = self.options
        inputs = self.net.token_ids(texts, o.doc_marker, o.doc_prompt, o.doc_length, False)
        return {**as_tensors(inputs), "keep": torch.as_tensor(self.net.keep_mask(inputs))}

    def score(self, q: torch.Tensor, d: torch.Tensor, d_inputs, k_train: int = 0) -> torch.Tensor:
        """``B x N``; ``k_train`` > 0 scores by XTR at that k_train instead of the view's own
        (the trainer's stacked multi-k' loss)."""
        keep = d_inputs["keep"].to(d.device)
        if self.scorer == "xtr":
            return self.scale * scores.xtr_scores(q, d, keep, k_train or self.k_train)
        return self.scale * scores.maxsim_scores(q, d, keep)

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        self.module.transformer.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        if self.module.linear is not None:  # PyLate's layout, which load_projection reads back
            (folder / "1_Dense").mkdir()
            save_file({f"linear.{k}": v.contiguous() for k, v in self.module.linear.state_dict().items()},
                      str(folder / "1_Dense" / "model.safetensors"))


COLBERT_FAMILY = EncoderFamily("colbert", ColbertOptions, ColbertQueryEncoder, ColbertDocumentEncoder,
                               store="tokens", pair_scores=scores.maxsim, trainable=ColbertTrainable)
