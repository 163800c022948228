"""Architecture registry: name -> model class (which names its config class).

The built-in architectures register themselves when :mod:`core.sae.models` is imported, which
importing :mod:`core.sae` always does first. ``register_architecture`` refuses a name that is already taken, so two modules can never
silently replace each other's architecture.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar

from core.base.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from core.sae.config import SAEConfig
    from core.sae.models import SparseAutoencoder

__all__ = ["register_architecture", "get_architecture", "available_architectures", "build_sae", "config_from_dict"]

_REGISTRY: dict[str, type] = {}
M = TypeVar("M", bound=type)


def register_architecture(name: str) -> Callable[[M], M]:
    """Class decorator: register a :class:`SparseAutoencoder` subclass under ``name``."""

    def decorate(cls: M) -> M:
        if name in _REGISTRY:
            raise ValueError(f"SAE architecture {name!r} is already registered ({_REGISTRY[name].__name__})")
        config_class = getattr(cls, "config_class", None)
        if config_class is None or config_class.arch != name:
            raise ValueError(f"{cls.__name__}.config_class must be a config whose arch is {name!r}")
        _REGISTRY[name] = cls
        return cls

    return decorate


def get_architecture(name: str) -> type["SparseAutoencoder"]:
    """The model class registered under ``name``; InputError naming the choices otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown SAE architecture {name!r}",
                         fix=f"use one of: {', '.join(available_architectures())}") from None


def available_architectures() -> list[str]:
    return list(_REGISTRY)


def config_from_dict(d: dict[str, Any]) -> "SAEConfig":
    """Rebuild any architecture's config from its ``to_dict()`` (the ``arch`` key picks the class)."""
    if "arch" not in d:
        raise InputError("SAE config has no 'arch' key", fix="it was not written by FeatureLens")
    return get_architecture(d["arch"]).config_class.from_dict(d)


def build_sae(config: "SAEConfig", *, d_in: int, seed: int = 0,
              generator: "torch.Generator | None" = None) -> "SparseAutoencoder":
    """A freshly initialised SAE for ``d_in``-dimensional inputs; ``seed`` fixes the weights."""
    import torch

    cls = get_architecture(config.arch)
    if generator is None:
        generator = torch.Generator().manual_seed(int(seed))
    return cls(config, d_in=d_in, generator=generator)
