"""One schema mechanism for the project's YAML files: encoder cards (and each family's
options), regression specs and training configs.

A schema is a dataclass. A field's annotation is its type (``str``, ``int``, ``float``,
``bool``, ``dict``, ``list[X]``/``tuple[X, ...]``, ``X | None``, a nested dataclass, ``Any``)
and :func:`checked` adds its range (``ge``, ``gt``, ``le``, ``choices``, ``pattern``).
:func:`from_mapping` checks a parsed mapping against it (unknown keys, missing keys, every
value's type and range) and builds the instance; each problem raises the caller's error
type naming the file and the dotted key::

    regressions/x.yaml: key 'metrics.nDCG@10.tolerance': must be at least 0, got -0.1

The types are strict, so that nothing is read as something it does not say: an ``int`` is
never a bool or ``7.5``; a ``float`` is a finite number (never ``.nan``, ``.inf``, a bool
or ``'abc'``); a ``bool`` is ``true``/``false`` (never the string ``'no'``); a ``str`` is a
string (quote ``'2019'``). A new key in a file is one new field on its dataclass.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any, Callable


class InputError(ValueError):
    """Bad input from a file or an argument; the message names the file (and line, key or
    field). Every reader's and loader's error derives from it."""


def checked(default: Any = dataclasses.MISSING, *, default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
            ge: float | None = None, gt: float | None = None, le: float | None = None,
            choices: tuple | None = None, pattern: tuple[str, str] | None = None) -> Any:
    """A dataclass field with a range: ``ge``/``gt``/``le`` bounds for numbers, ``choices`` for any
    value, ``pattern`` ``(regex, what it means in words)`` that a whole string must match."""
    limits = {"ge": ge, "gt": gt, "le": le, "choices": choices, "pattern": pattern}
    metadata = {"schema": {k: v for k, v in limits.items() if v is not None}}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _convert(value: Any, kind: Any, key: str, where: str, error: type[Exception]) -> Any:
    """``value`` checked against the annotation ``kind`` (and converted: ints to floats, lists
    to tuples, mappings to nested dataclasses)."""
    def fail(expected: str):
        raise error(f"{where}: key {key!r}: expected {expected}, got {_type_name(value)} {value!r}")

    if kind is Any:
        return value
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"schema type {kind!r} of {key!r}: only 'X | None' unions are supported")
        return _convert(value, options[0], key, where, error)
    if kind is bool:
        return value if isinstance(value, bool) else fail("true or false")
    if kind is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else fail("an integer")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail("a number")
        if not math.isfinite(value):
            fail("a finite number")
        return float(value)
    if kind is str:
        return value if isinstance(value, str) else fail("a string")
    if kind is dict or origin is dict:
        if not isinstance(value, dict):
            fail("a mapping")
        return {k: _convert(v, args[1], f"{key}.{k}", where, error) for k, v in value.items()} if args else dict(value)
    if origin in (list, tuple) or kind in (list, tuple):
        if not isinstance(value, (list, tuple)):
            fail("a list")
        item = args[0] if args else Any
        items = [_convert(v, item, f"{key}[{i}]", where, error) for i, v in enumerate(value)]
        return tuple(items) if (origin or kind) is tuple else items
    if dataclasses.is_dataclass(kind):
        return from_mapping(kind, value, where, error, prefix=f"{key}.")
    raise TypeError(f"schema type {kind!r} of {key!r} is not supported")


def _check_range(value: Any, limits: dict, key: str, where: str, error: type[Exception]) -> None:
    if value is None:
        return
    problem = None
    if "choices" in limits and value not in limits["choices"]:
        problem = f"must be one of {', '.join(map(str, limits['choices']))}"
    elif "pattern" in limits and not re.fullmatch(limits["pattern"][0], value):
        problem = f"must be {limits['pattern'][1]}"
    elif "ge" in limits and value < limits["ge"]:
        problem = f"must be at least {limits['ge']}"
    elif "gt" in limits and value <= limits["gt"]:
        problem = f"must be greater than {limits['gt']}"
    elif "le" in limits and value > limits["le"]:
        problem = f"must be at most {limits['le']}"
    if problem:
        raise error(f"{where}: key {key!r}: {problem}, got {value!r}")


def from_mapping(cls: type, raw: Any, where: str, error: type[Exception], prefix: str = "",
                 given: dict | None = None, defaults: dict | None = None) -> Any:
    """An instance of the dataclass ``cls`` from the mapping ``raw`` read from ``where``.

    ``given``: fields the caller sets, which are not keys of the file (a spec's name, path);
    ``defaults``: values for keys the file may leave out, computed by the caller. Any problem
    raises ``error`` naming ``where`` and the key (``prefix`` + name).
    """
    if not isinstance(raw, dict):
        name = prefix.rstrip(".") or "(top level)"
        raise error(f"{where}: key {name!r}: expected a mapping, got {_type_name(raw)} {raw!r}")
    given, defaults = given or {}, defaults or {}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in given}
    for key in raw:
        if key not in fields:
            raise error(f"{where}: unknown key '{prefix}{key}'; known: {', '.join(sorted(fields))}")
    values = dict(given)
    for name, f in fields.items():
        key = prefix + name
        if name in raw:
            value = _convert(raw[name], hints[name], key, where, error)
        elif name in defaults:
            value = defaults[name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise error(f"{where}: missing key '{key}'")
        else:
            continue
        _check_range(value, f.metadata.get("schema", {}), key, where, error)
        values[name] = value
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:  # the dataclass's own cross-field checks (__post_init__)
        raise error(f"{where}: {prefix.rstrip('.') + ': ' if prefix else ''}{err}") from None


def one_line(err: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, cut to ``limit`` characters: torch and pickle errors
    span lines, and an error we raise names the file in a single line."""
    return " ".join(str(err).split())[:limit]
