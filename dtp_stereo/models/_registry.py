"""The one registry of model architectures: a dict plus a decorator."""

from typing import Callable, Dict, List

from torch import nn

_MODELS: Dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model factory under ``name``; the factory takes config keyword arguments."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = fn
        return fn

    return deco


def list_models() -> List[str]:
    """Names of all registered architectures, sorted."""
    return sorted(_MODELS)


def build_model(name: str, **cfg) -> nn.Module:
    """Build architecture ``name`` from config keyword arguments.

    Raises:
        KeyError: ``name`` is not registered (the message lists the valid names).
        TypeError: a config key is not known to that architecture.

    The returned module carries ``model_name`` (the registry name), which checkpoints record.
    """
    try:
        factory = _MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: "
                       f"{', '.join(list_models())}") from None
    model = factory(**cfg)
    model.model_name = name
    return model
