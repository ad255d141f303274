"""The :class:`Runtime` base class every backend derives from, and what backends share (layer times, load errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import CheckpointError
from ..spec import ModelSpec
from .discovery import resolve_spec
from .tensors import TensorInfo, check_feed


class LayerTime(NamedTuple):
    """Time one layer (node) of the model took in one inference, as its backend's profiler reports it.

    Attributes:
        name: layer or node name in the backend's (possibly fused) graph.
        op_type: the backend's operator or kernel type (``""`` where the backend gives none).
        ms: milliseconds.
    """

    name: str
    op_type: str
    ms: float


def mean_layer_times(runs: Sequence[Iterable[LayerTime]]) -> List[LayerTime]:
    """Per-layer mean over profiled inferences, slowest first; the first (warm-up) run is left out of several.

    Args:
        runs: the layer times of each inference, in order.
    """
    kept = runs[1:] if len(runs) > 1 else runs
    totals: Dict[Tuple[str, str], float] = {}
    for run in kept:
        for layer in run:
            key = (layer.name, layer.op_type)
            totals[key] = totals.get(key, 0.0) + layer.ms
    means = [LayerTime(name, op, ms / len(kept)) for (name, op), ms in totals.items()]
    return sorted(means, key=lambda t: -t.ms)


def invalid_artifact(path: Union[str, Path], kind: str, cause: BaseException) -> CheckpointError:
    """The error for a file its backend cannot read (truncated, corrupt, or not a model).

    Args:
        path: the artifact.
        kind: what it should be, e.g. ``"ONNX"``, ``"OpenVINO"``, ``"TFLite"``.
        cause: the backend's exception; its last line (OpenVINO's reason follows source locations) goes into the
            message.
    """
    detail = ([line for line in str(cause).splitlines() if line.strip()] or [type(cause).__name__])[-1].strip()[:200]
    return CheckpointError(f"{Path(path).name} is not a valid {kind} model ({detail}): re-export it")


class Runtime:
    """One loaded model on one backend: validated ``infer`` over named numpy arrays.

    Subclasses set ``self._inputs`` / ``self._outputs`` (tuples of :class:`TensorInfo`) when they open the
    artifact and implement :meth:`_infer`; they may override :meth:`embedded_metadata` (metadata stored inside
    the artifact) and :meth:`close`. Backends with a per-layer profiler set :attr:`layer_profiling`, take a
    ``profiling=True`` option and implement :meth:`layer_times`.
    """

    layer_profiling = False

    def __init__(self, path: Union[str, Path], spec: Optional[ModelSpec] = None) -> None:
        """Remember the artifact and an optional known spec (otherwise found on first use of :attr:`spec`)."""
        self.path = Path(path)
        self._spec = spec
        self._inputs: Tuple[TensorInfo, ...] = ()
        self._outputs: Tuple[TensorInfo, ...] = ()

    @classmethod
    def load(cls, path: Union[str, Path], **options: Any) -> "Runtime":
        """Open ``path``; ``options`` are the subclass's constructor arguments."""
        return cls(path, **options)

    @property
    def inputs(self) -> Tuple[TensorInfo, ...]:
        """The model inputs."""
        return self._inputs

    @property
    def outputs(self) -> Tuple[TensorInfo, ...]:
        """The model outputs, in the artifact's order."""
        return self._outputs

    def embedded_metadata(self) -> Dict[str, str]:
        """Key/value metadata stored inside the artifact (empty when the format has none)."""
        return {}

    @property
    def spec(self) -> ModelSpec:
        """The artifact's :class:`ModelSpec`: sidecar, embedded, or inferred (see :func:`resolve_spec`)."""
        if self._spec is None:
            self._spec = resolve_spec(self.path, self.embedded_metadata(), self.inputs, self.outputs)
        return self._spec

    def infer(self, feed: Union[np.ndarray, Mapping[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        """Run the model once.

        Args:
            feed: one array for a single-input model, or ``{input name: array}`` for every input; dtypes must
                match :attr:`inputs` and shapes must fit them.

        Returns:
            ``{output name: array}`` in the order of :attr:`outputs`.

        Raises:
            ValueError: missing, unknown, mistyped or misshapen inputs.
        """
        feeds = check_feed(feed, self.inputs)
        return self._infer(feeds)

    def _infer(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def layer_times(self) -> List[LayerTime]:
        """Mean time per layer over the inferences run since loading with ``profiling=True``, slowest first.

        The first inference (allocations, warm-up) is left out when there were several.

        Raises:
            NotImplementedError: the backend has no per-layer profiler (:attr:`layer_profiling` is False).
            ValueError: the runtime was not loaded with ``profiling=True``, or has not run yet.
        """
        raise NotImplementedError(f"{type(self).__name__} has no per-layer profiler")

    def close(self) -> None:
        """Release the backend's resources (a no-op by default)."""

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"
