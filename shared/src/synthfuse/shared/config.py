"""Dataclass configs with a validated dict / YAML round trip (unknown keys and wrong types raise).

A config is a ``@dataclass`` that inherits :class:`YamlConfig`::

    @dataclass
    class TrainConfig(YamlConfig):
        steps: int = 100
        lr: float = 1e-3
        betas: tuple[float, ...] = (0.9, 0.98)
        schedule: Literal["cosine", "constant"] = "cosine"
        out_dir: str | None = None

    cfg = TrainConfig.from_yaml("train.yaml")       # or from_dict({...}); cfg.to_yaml("out.yaml")

Every field is checked against its annotation when the config is built, from a mapping or
directly (``TrainConfig(steps="3")`` raises): ``bool``, ``int`` (not ``bool``), ``float``
(finite; an ``int`` is promoted), ``str``, ``X | None``, other unions, ``Literal[...]``,
``list[X]`` / ``tuple[X, ...]`` / ``tuple[X, Y]`` (a YAML list; tuples stay tuples),
``dict`` / ``dict[K, V]``, ``Any`` and nested dataclasses (a mapping is built into one, its
errors named by their dotted path such as ``train.steps``). Annotations outside this list
raise ``TypeError`` naming the field. PyYAML is imported only by the YAML methods
(``pip install 'synthfuse-shared[yaml]'``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from synthfuse.shared.backend import import_optional
from synthfuse.shared.io import atomic_write_text

__all__ = ["YamlConfig", "check_value", "validate_mapping"]

C = TypeVar("C", bound="YamlConfig")


class YamlConfig:
    """Mixin of a ``@dataclass`` config: field type checks, ``from_dict`` / ``to_dict``, YAML.

    A subclass that defines ``__post_init__`` (range checks, derived defaults) calls
    ``super().__post_init__()`` first, so its fields are already checked and coerced.
    """

    def __post_init__(self) -> None:
        hints = _type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            checked = check_value(value, hints[f.name], f"{type(self).__name__}.{f.name}")
            if checked is not value:
                object.__setattr__(self, f.name, checked)  # works for frozen dataclasses too

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any] | None, *, where: str = "") -> C:
        """Build from a mapping (``None``: all defaults), checking keys and value types.

        Parameters
        ----------
        values : mapping or None
            Field name -> value; nested dataclass fields take a mapping (or an instance).
        where : str
            Dotted path of this section in a larger config (``"optim.kfac"``), used in errors.

        Raises
        ------
        ValueError
            On an unknown key (naming it, the class and the valid keys), a value of the wrong
            type (naming its dotted path and the field) or a non-mapping.
        """
        return cls(**validate_mapping(cls, values, where=where))

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of the fields (tuples become lists): the YAML / checkpoint form."""
        return _plain(dataclasses.asdict(self))

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """Return the YAML text of :meth:`to_dict`; also write it atomically to ``path`` when given."""
        text = import_optional("yaml").safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_yaml(cls: type[C], source: str | os.PathLike) -> C:
        """Load from a YAML file path, or from YAML text (a ``str`` containing a newline).

        Raises
        ------
        FileNotFoundError
            When ``source`` names no file.
        ValueError
            As :meth:`from_dict`.
        """
        if isinstance(source, str) and "\n" in source:
            text = source
        else:
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"no config file at {path} (pass a path, or YAML text with a newline)")
            text = path.read_text(encoding="utf-8")
        return cls.from_dict(import_optional("yaml").safe_load(text))


def validate_mapping(cls: type, values: Mapping[str, Any] | None, *, where: str = "",
                     exclude: typing.Collection[str] = ()) -> dict[str, Any]:
    """Check a mapping of field values for the dataclass ``cls``; return them coerced.

    Keys must be fields of ``cls`` not in ``exclude``; each value is checked with
    :func:`check_value` (nested dataclass fields given as mappings are built). Missing
    fields are left out (the dataclass defaults fill them). ``None`` is an empty mapping
    (an empty YAML section).
    """
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ValueError(f"{where or cls.__name__} must be a mapping of field: value, got {type(values).__name__}")
    valid = [f.name for f in dataclasses.fields(cls) if f.name not in exclude]
    unknown = sorted(set(values) - set(valid), key=str)
    if unknown:
        named = [f"{where}.{k}" if where else k for k in unknown]
        raise ValueError(f"unknown {cls.__name__} key(s) {named}; valid keys{' of ' + where if where else ''}: {valid}")
    hints = _type_hints(cls)
    return {name: _check(value, hints[name], f"{where}.{name}" if where else name, owner=f"{cls.__name__}.{name}")
            for name, value in values.items()}


def check_value(value: Any, hint: Any, where: str) -> Any:
    """Return ``value`` checked against the annotation ``hint`` (coerced: int -> float, list -> tuple).

    ``where`` names the value in the error (``"train.steps"``). Raises ``ValueError`` for a
    value of the wrong type and ``TypeError`` for an annotation this module does not handle.
    """
    return _check(value, hint, where, owner="")


def _check(value: Any, hint: Any, where: str, owner: str, nullable: bool = False) -> Any:
    """``where``: the value's dotted path; ``owner``: its ``Class.field``; ``nullable``: may be None."""
    def fail(expected: str) -> typing.NoReturn:
        hint_text = ""
        if isinstance(value, str) and expected.endswith("number"):
            with_dot = _yaml_float_hint(value)
            hint_text = f" (YAML reads {value!r} as text; write {with_dot})" if with_dot else ""
        expected += " or null" if nullable else ""
        suffix = f" ({owner})" if owner and owner != where else ""
        raise ValueError(f"{where} must be {expected}, got {value!r}{hint_text}{suffix}")

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # X | None: X's own message (and nested errors) plus "or null"
            return _check(value, options[0], where, owner, nullable=True)
        for option in options:
            try:
                return _check(value, option, where, owner)
            except ValueError:
                continue
        fail(" or ".join(_describe(a) for a in args))
    if origin is typing.Literal:
        if value in args and not (isinstance(value, bool) and not any(isinstance(a, bool) for a in args)):
            return value
        fail(f"one of {list(args)}")
    if hint is bool:
        if not isinstance(value, bool):
            fail("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            fail("an integer")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            fail("a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            fail("a string")
        return value
    if hint in (list, tuple) or origin in (list, tuple):
        container = origin or hint
        if not isinstance(value, (list, tuple)):
            fail(f"a list ({_describe(hint)})")
        if container is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                fail(f"a list of {len(args)} items ({_describe(hint)})")
            items = [_check(v, a, f"{where}[{i}]", owner) for i, (v, a) in enumerate(zip(value, args))]
        else:
            item = args[0] if args else Any
            items = [_check(v, item, f"{where}[{i}]", owner) for i, v in enumerate(value)]
        return container(items)
    if hint is dict or origin is dict:
        if not isinstance(value, Mapping):
            fail("a mapping")
        key_hint, value_hint = args if args else (Any, Any)
        return {_check(k, key_hint, f"{where} key", owner): _check(v, value_hint, f"{where}.{k}", owner)
                for k, v in value.items()}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping) or value is None:
            return hint(**validate_mapping(hint, value, where=where))
        fail(f"a mapping of {hint.__name__} fields")
    raise TypeError(f"{owner or where}: synthfuse.shared.config cannot check the annotation {hint!r}; use "
                    f"bool, int, float, str, Literal, a union, list, tuple, dict, Any or a dataclass")


def _describe(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _yaml_float_hint(text: str) -> str | None:
    """``"1.0e-3"`` for ``"1e-3"``: YAML 1.1 reads exponent floats without a dot as strings."""
    try:
        float(text)
    except ValueError:
        return None
    mantissa, sep, exponent = text.lower().partition("e")
    if not sep or "." in mantissa:
        return None
    return f"{mantissa}.0e{exponent}"


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
