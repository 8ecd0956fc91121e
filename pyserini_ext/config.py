"""Reading the project's YAML files (encoder cards, regression specs, training configs)."""

from __future__ import annotations

from pathlib import Path

import yaml


def read_yaml_mapping(path: Path, error: type[Exception], text: str | None = None) -> dict:
    """The mapping at the top of ``path`` (or of ``text``, already read from it); any other
    content raises ``error`` naming the file."""
    try:
        raw = yaml.safe_load(path.read_text() if text is None else text)
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping at the top level")
    return dict(raw)
