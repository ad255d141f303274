"""Registry of the modules a model yaml may name, with how ``parse_model`` treats each one's arguments.

YOLOv5's ``parse_model`` evaluates module names with ``eval``; here only registered names resolve. Each entry says
how the yaml arguments become constructor arguments (``channels``):

- ``"scaled"``: ``args = [c1, make_divisible(args[0] * width_multiple, 8), *args[1:]]``; output channels are the
  scaled ``args[0]`` (YOLOv5's Conv, C3, SPPF, ... and the tutorials' custom backbone blocks).
- ``"fixed"``: output channels are ``args[0]``, arguments passed unchanged (backbone slices with fixed widths).
- ``"same"``: output channels equal the input's, arguments passed unchanged (``nn.Upsample``, pooling).
- ``"concat"``: output channels are the sum of the inputs' (``Concat``).
- ``"batchnorm"``: ``args = [c1]`` (``nn.BatchNorm2d``).
- ``"head"``: the input channel list is appended to the arguments (``Detect`` and other heads).
- ``"prepend"``: ``args = [c1, *args]``; output channels are ``args[0]`` unscaled (``Classify``: ``[nc]``).

``repeat=True`` inserts the depth-scaled repeat count at ``args[2]`` and builds the module once (YOLOv5's C3,
the slim-neck's VoVGSCSP); otherwise ``n > 1`` builds an ``nn.Sequential`` of ``n`` copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, TypeVar

from ..errors import ConfigError

CHANNEL_POLICIES = ("scaled", "fixed", "same", "concat", "batchnorm", "head", "prepend")

T = TypeVar("T")


@dataclass(frozen=True)
class ModuleEntry:
    """How one yaml module name is built.

    Attributes:
        name: the name used in yaml files.
        factory: the class (or callable) called with the rewritten arguments.
        channels: one of :data:`CHANNEL_POLICIES`.
        repeat: insert the repeat count at ``args[2]`` instead of stacking copies.
    """

    name: str
    factory: Callable
    channels: str
    repeat: bool = False


MODULES: Dict[str, ModuleEntry] = {}


def register_module(
    name: Optional[str] = None, *, channels: str = "scaled", repeat: bool = False
) -> Callable[[T], T]:
    """Class decorator that makes a module available to model yaml files.

    Args:
        name: yaml name; defaults to the class name.
        channels: argument policy, one of :data:`CHANNEL_POLICIES`.
        repeat: whether ``parse_model`` passes the repeat count as ``args[2]``.

    Raises:
        ValueError: the name is registered already or the policy is unknown.
    """

    def decorator(factory: T) -> T:
        add_module(name or factory.__name__, factory, channels=channels, repeat=repeat)
        return factory

    return decorator


def add_module(name: str, factory: Callable, *, channels: str = "scaled", repeat: bool = False) -> None:
    """Register ``factory`` (e.g. a torch class defined elsewhere) under the yaml name ``name``."""
    if channels not in CHANNEL_POLICIES:
        raise ValueError(f"channels must be one of {CHANNEL_POLICIES}, got {channels!r}")
    if name in MODULES:
        raise ValueError(f"module {name!r} is registered already")
    MODULES[name] = ModuleEntry(name, factory, channels, repeat)


def get_module(name: str) -> ModuleEntry:
    """Look up a yaml module name.

    Raises:
        ConfigError: the name is unknown; the message lists the known names.
    """
    try:
        return MODULES[name]
    except KeyError:
        known = ", ".join(sorted(MODULES))
        raise ConfigError(f"unknown module {name!r} in the model yaml; known modules: {known}") from None
