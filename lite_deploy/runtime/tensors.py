"""Model inputs and outputs as backends report them, and the check of a feed against them."""

from __future__ import annotations

from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple, Union

import numpy as np

Shape = Tuple[Optional[int], ...]


class TensorInfo(NamedTuple):
    """Name, shape and dtype of one model input or output.

    Attributes:
        name: tensor name in the artifact.
        shape: dimensions; ``None`` marks a dynamic one.
        dtype: numpy dtype the runtime takes (inputs) or returns (outputs).
    """

    name: str
    shape: Shape
    dtype: np.dtype



def check_feed(feed: Union[np.ndarray, Mapping[str, np.ndarray]],
               inputs: Tuple[TensorInfo, ...]) -> Dict[str, np.ndarray]:
    """Check a feed against the model inputs and return it as a dict.

    Raises:
        ValueError: what is wrong and what was expected, e.g.
            ``"input 'images': got shape (1, 3, 320, 320), expected (1, 3, 640, 640)"``.
    """
    if isinstance(feed, np.ndarray):
        if len(inputs) != 1:
            names = ", ".join(repr(t.name) for t in inputs)
            raise ValueError(f"this model has {len(inputs)} inputs ({names}): pass a dict {{name: array}}")
        feeds = {inputs[0].name: feed}
    elif isinstance(feed, Mapping):
        feeds = dict(feed)
    else:
        raise ValueError(f"feed must be a numpy array or a dict of arrays, got {type(feed).__name__}")
    expected = {t.name: t for t in inputs}
    missing = [n for n in expected if n not in feeds]
    unknown = [n for n in feeds if n not in expected]
    if missing or unknown:
        raise ValueError(f"inputs {sorted(expected)} expected; missing {missing}, unknown {unknown}")
    for name, array in feeds.items():
        info = expected[name]
        if not isinstance(array, np.ndarray):
            raise ValueError(f"input {name!r}: expected a numpy array, got {type(array).__name__}")
        if array.dtype != info.dtype:
            raise ValueError(f"input {name!r}: got dtype {array.dtype}, expected {np.dtype(info.dtype)}")
        if not shape_fits(array.shape, info.shape):
            shown = tuple("?" if d is None else d for d in info.shape)
            raise ValueError(f"input {name!r}: got shape {tuple(array.shape)}, expected {shown} (? = any)")
    return feeds


def shape_fits(shape: Tuple[int, ...], expected: Shape) -> bool:
    """Whether a concrete ``shape`` matches ``expected`` (same rank, equal static dimensions)."""
    return len(shape) == len(expected) and all(e is None or e == s for s, e in zip(shape, expected))


def dynamic_dim(value: Any) -> Optional[int]:
    """A dimension as reported by a backend -> int, or ``None`` when symbolic, negative or unknown."""
    if isinstance(value, (int, np.integer)) and value >= 0:
        return int(value)
    return None
