"""Methods are classes registered by name; :func:`get_method` looks one up."""

from __future__ import annotations

from synthfuse.retrain.methods._base import RetrainMethod

__all__ = ["available_methods", "get_method", "register"]

_REGISTRY: dict[str, type[RetrainMethod]] = {}


def register(cls: type[RetrainMethod]) -> type[RetrainMethod]:
    """Class decorator: register ``cls`` under ``cls.name`` (names are unique)."""
    if not (isinstance(cls, type) and issubclass(cls, RetrainMethod)):
        raise TypeError(f"only RetrainMethod subclasses can be registered, got {cls!r}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a method named {cls.name!r} is already registered ({_REGISTRY[cls.name].__name__})")
    _REGISTRY[cls.name] = cls
    return cls


def get_method(name: str) -> type[RetrainMethod]:
    """The method class registered as ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown retraining method {name!r}; available: {available_methods()}")
    return _REGISTRY[name]


def available_methods() -> list[str]:
    """Names of the registered methods, sorted."""
    return sorted(_REGISTRY)
