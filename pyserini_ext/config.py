"""Reading the project's YAML files (encoder cards, regression specs, training configs).

The loader is PyYAML's safe loader with four changes, so that a file is either read as it
says or refused with its name: aliases (``*name``) are refused (an alias "bomb" of nested
references expands to billions of nodes); a key written twice is refused (PyYAML keeps the
last silently); nesting deeper than :data:`MAX_DEPTH` is refused (instead of a
RecursionError); and ``1e-5`` is a float, as in YAML 1.2 (YAML 1.1 reads it as a string).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

MAX_DEPTH = 64
MAX_BYTES = 8 << 20  # a card, spec or config is a few KB; more is not one of ours


class _StrictLoader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"aliases (*{event.anchor}) are not allowed",
                                              event.start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a plain value",
                                                        key_node.start_mark) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is written twice",
                                                        key_node.start_mark)
        return super().construct_mapping(node, deep)


_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def parse_yaml(text: str):
    """``text`` parsed by the strict loader (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=_StrictLoader)


def read_yaml_mapping(path: Path, error: type[Exception], text: str | None = None) -> dict:
    """The mapping at the top of ``path`` (or of ``text``, already read from it); any other
    content raises ``error`` naming the file."""
    path = Path(path)
    if text is None:
        text = read_text_file(path, error)
    try:
        raw = parse_yaml(text)
    except yaml.YAMLError as err:
        where = f"line {err.problem_mark.line + 1}: " if getattr(err, "problem_mark", None) else ""
        problem = getattr(err, "problem", None) or str(err)
        raise error(f"{path}: not valid YAML: {where}{' '.join(str(problem).split())}") from None
    except RecursionError:  # the scanner's own recursion, before any depth check
        raise error(f"{path}: not valid YAML: nested too deeply") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping at the top level")
    return dict(raw)


def read_text_file(path: Path, error: type[Exception]) -> str:
    """A small UTF-8 text file; a missing, oversized, or non-UTF-8 file raises ``error`` naming it."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise error(f"{path}: {size} bytes; not a card, spec or config (at most {MAX_BYTES})")
        data = path.read_bytes()
    except OSError as err:
        raise error(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise error(f"{path}:{line}: not UTF-8 (byte {data[err.start]:#04x} at offset {err.start})") from None
