"""Encoder families (code) and encoder cards (data naming instances of a family).

A *family* is the code for one kind of model (dense bi-encoder, TCT-ColBERT, ...):
its query and document encoder classes and the options it understands. Families
are registered by exact name in :data:`ENCODER_FAMILIES`, which other packages
extend through the entry-point group ``pyserini_ext.encoders``.

A *card* (``encoders/<name>.yaml``) names one instance: the family, where the
weights come from, and the family's options. ``load_card("all-minilm-l6-v2")``
reads and validates it; ``card.query_encoder()`` builds the encoder.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from pyserini_ext.config import read_yaml_mapping
from pyserini_ext.paths import safe_name
from pyserini_ext.registry import Registry, UnknownNameError
from pyserini_ext.resources import resource_dirs
from pyserini_ext.schema import InputError, checked, from_mapping

log = logging.getLogger(__name__)

CARDS_ENV = "PYSERINI_EXT_CARDS"  # extra folders of cards, os.pathsep-separated
MODELS_ENV = "PYSERINI_EXT_MODELS"  # a folder of local checkpoints that cards name as ${PYSERINI_EXT_MODELS}/...


class CardError(InputError):
    pass


# A hub revision a card may pin: a full commit id. Branch and tag names ("main", "v1") are
# refused: the hub lets their owner move them, so they would not pin the weights.
COMMIT_ID = (r"[0-9a-f]{40}", "a full commit id (40 lowercase hex digits; branch and tag names can move)")


class HubModel(str):
    """A hub id as :meth:`ModelSource.resolve` returns it, carrying the card's ``revision``.
    It is a ``str`` so that a family taking "a model path or hub id" works unchanged; the
    families here load it through :func:`from_pretrained`, which passes the revision on."""

    def __new__(cls, hub: str, revision: str | None = None):
        self = super().__new__(cls, hub)
        self.revision = revision
        return self


def from_pretrained(loader, model: str, **kwargs):
    """``loader.from_pretrained(model, **kwargs)``, at the card's pinned revision when ``model``
    is a pinned hub id (a path or an unpinned id loads as before)."""
    revision = getattr(model, "revision", None)
    if revision:
        kwargs["revision"] = revision
    return loader.from_pretrained(str(model), **kwargs)


@dataclass(frozen=True)
class ModelSource:
    """Where a checkpoint comes from, tried in this order: a model ``trained`` by our
    training config of that name (under the work folder); a local ``path``; a Python
    package that ships the weights (``package.get_model_path()``); a hub id, at
    ``revision`` (a commit id) when the card pins one."""

    hub: str | None = None
    path: str | None = None
    python_package: str | None = None
    trained: str | None = None
    revision: str | None = checked(None, pattern=COMMIT_ID)

    def __post_init__(self):
        if self.revision is not None and not self.hub:
            raise ValueError(f"revision {self.revision!r} pins a hub model, but the card names no model.hub")
        if self.python_package is not None and not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", self.python_package):
            raise ValueError(f"python_package {self.python_package!r} is not a module name")
        if self.trained is not None:
            safe_name(self.trained, "training config")

    def resolve(self) -> str:
        if self.trained:
            from pyserini_ext.paths import trained_model_dir

            folder = trained_model_dir(self.trained)
            if not (folder / "config.json").is_file():
                raise FileNotFoundError(f"trained model {folder} does not exist yet; "
                                        f"train it with: pyserini-ext train {self.trained}")
            return str(folder)
        if self.path:
            path = Path(os.path.expandvars(self.path)).expanduser()
            if not path.exists():
                raise FileNotFoundError(f"model path {path} does not exist (from {self.path!r}; "
                                        f"${MODELS_ENV} is {os.environ.get(MODELS_ENV)!r})")
            return str(path)
        if self.python_package:
            try:
                package = importlib.import_module(self.python_package)
                if not callable(getattr(package, "get_model_path", None)):
                    raise CardError(f"python_package {self.python_package!r} has no get_model_path(); a card may "
                                    f"name only a package that ships weights and says where they are")
                return str(package.get_model_path())
            except ImportError:
                if not self.hub:
                    raise
                log.info("%s not installed; loading %s from the hub", self.python_package, self.hub)
        if not self.hub:
            raise CardError("model source names neither a path, a python_package nor a hub id")
        return HubModel(self.hub, self.revision)


STORES = ("vectors", "impacts", "tokens")


@dataclass(frozen=True)
class EncoderFamily:
    """A model family: its option defaults, how to build each side's encoder, and what the
    rest of the system needs to know about it, so nothing outside asks for its name.

    * ``store``: what the document encoder's output is stored as: ``vectors`` (one dense
      vector per document: a FAISS index), ``impacts`` (``{term: impact}``: a Lucene impact
      index), ``tokens`` (a matrix of token vectors per document: a token store);
    * ``pair_scores``: ``(query representation, [document representations]) -> scores``
      (NumPy, one per document), the family's own relevance score (see
      :mod:`pyserini_ext.scores`), as search ranks by it;
    * ``trainable``: ``(card options, model path, **training) -> Trainable``, the family's
      trainable view (:mod:`pyserini_ext.train.models`); None when it cannot be trained.
    """

    name: str
    options: type  # a dataclass of the family's card options, with defaults
    query_encoder: Callable[[str, Any], Any]  # (model path or hub id, options) -> QueryEncoder
    document_encoder: Callable[[str, Any], Any]  # (model path or hub id, options) -> DocumentEncoder
    store: str  # one of STORES
    pair_scores: Callable[[Any, list], np.ndarray]  # (query representation, document representations) -> scores
    trainable: Callable[..., Any] | None = None  # (options, model path, **training) -> Trainable

    def __post_init__(self):
        if self.store not in STORES:
            raise ValueError(f"family {self.name!r}: store must be one of {STORES}, got {self.store!r}")


ENCODER_FAMILIES: Registry[EncoderFamily] = Registry("encoder family", "pyserini_ext.encoders")


@dataclass(frozen=True)
class EncoderCard:
    name: str
    family: EncoderFamily
    model: ModelSource
    options: Any
    description: str = ""
    path: Path | None = None

    def query_encoder(self, **overrides):
        return self.family.query_encoder(self.model.resolve(), dataclasses.replace(self.options, **overrides))

    def document_encoder(self, **overrides):
        return self.family.document_encoder(self.model.resolve(), dataclasses.replace(self.options, **overrides))

    def export_onnx(self, precision: str | None = None) -> dict[str, Path]:
        """Both sides' ONNX graphs (exported once, then cached): ``{"query": path, "document": path}``."""
        overrides = {"backend": "onnx", **({"precision": precision} if precision else {})}
        # every family keeps its runtime graph at encoder.net.graph
        return {side: build(**overrides).net.graph.path
                for side, build in (("query", self.query_encoder), ("document", self.document_encoder))}


def card_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get(CARDS_ENV, "").split(os.pathsep) if p]
    return extra + resource_dirs("encoders")  # the built-in cards, then plugins' (entry points)


def card_names() -> list[str]:
    return sorted({p.stem for d in card_dirs() if d.is_dir() for p in d.glob("*.yaml")})


def _card_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".yaml":
        return path
    safe_name(str(name_or_path), "encoder card")  # a name, never a way out of the card folders
    found = [d / f"{name_or_path}.yaml" for d in card_dirs() if (d / f"{name_or_path}.yaml").is_file()]
    if not found:
        raise UnknownNameError(f"unknown encoder {name_or_path!r}; registered: {', '.join(card_names()) or '(none)'}")
    return found[0]


def load_card(name_or_path: str | Path) -> EncoderCard:
    """A card by exact name (searched in ``$PYSERINI_EXT_CARDS`` then ``encoders/``) or by path."""
    return parse_card(_card_path(name_or_path))


def _read_card(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The card's keys over those of the card it ``extends`` (recursively)."""
    raw = read_yaml_mapping(path, CardError)
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise CardError(f"{path}: key 'extends': expected a card name, got {base!r}")
    try:
        base_path = _card_path(base)
    except (ValueError, UnknownNameError) as err:  # not a plain name, or no such card
        raise CardError(f"{path}: key 'extends': {err}") from None
    if base_path.resolve() in seen:
        raise CardError(f"{path}: 'extends' forms a cycle through {base!r}")
    inherited = _read_card(base_path, (*seen, path.resolve()))
    inherited.pop("description", None)  # a description speaks for its own card only
    return {**inherited, **raw}


def parse_card(path: Path) -> EncoderCard:
    raw = _read_card(path)
    for key in ("family", "model"):
        if key not in raw:
            raise CardError(f"{path}: missing required key {key!r}")
    family_name = raw.pop("family")
    if not isinstance(family_name, str):
        raise CardError(f"{path}: key 'family': expected a family name, got {family_name!r}")
    try:
        family = ENCODER_FAMILIES.get(family_name)
    except UnknownNameError as err:
        raise CardError(f"{path}: key 'family': {err}") from None
    model_raw = raw.pop("model")
    if isinstance(model_raw, str):
        model_raw = {"hub": model_raw}
    model = from_mapping(ModelSource, model_raw, str(path), CardError, prefix="model.")
    name = raw.pop("name", path.stem)
    description = raw.pop("description", "")
    for key, value in (("name", name), ("description", description)):
        if not isinstance(value, str):
            raise CardError(f"{path}: key {key!r}: expected a string, got {value!r}")
    known = {f.name for f in dataclasses.fields(family.options)}
    for key in raw:
        if key not in known:
            raise CardError(f"{path}: unknown key {key!r} for family {family.name!r}; known: {', '.join(sorted(known))}")
    options = from_mapping(family.options, raw, str(path), CardError)
    return EncoderCard(name, family, model, options, description, path)


def batches(items, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def length_sorted(texts: list[str]) -> np.ndarray:
    """Order that groups texts of similar length, so each batch pads little."""
    return np.argsort([-len(t) for t in texts], kind="stable")


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors where ``mask`` is 1 (padding excluded)."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
