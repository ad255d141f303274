"""The target x precision loop (the benchmark, the demo and the tools run it): per precision, one export of every
target, each target on its own."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

from .exporter import Weights, export_targets
from .options import ExportOptions, parse_precisions
from .targets import ExportResult, Target, get_target, resolve_targets

LOGGER = logging.getLogger(__name__)


def export_each(weights: Weights, targets: Union[str, Sequence[str]], precisions: Union[str, Sequence[str]],
                options: Optional[ExportOptions] = None, *, out: Optional[Union[str, Path]] = None,
                name: Optional[str] = None, skip: Callable[[Target, ExportOptions], str] = lambda t, o: "",
                per_precision: Optional[Mapping[str, Mapping[str, Any]]] = None,
                **overrides: Any) -> Iterator[ExportResult]:
    """Export every target x precision pair, precision by precision.

    The targets of one precision are one :func:`~lite_deploy.export.exporter.export_targets` call: they share the
    loaded model, the FP32 reference and its mAP, and the calibration images; each target still succeeds or fails
    on its own. Artifact names differ by precision tag and target suffix, so every pair can share ``out``.

    Args:
        options, overrides: the options of every pair (:class:`ExportOptions` and its fields).
        out, name: output folder and file stem (see :func:`~lite_deploy.export.exporter.export`).
        skip: ``(target, options) -> reason`` to skip a pair without exporting it (``""``: export it).
        per_precision: more option fields for one precision's pairs, e.g. ``{"int8": {"data": "data.yaml"}}``.

    Yields:
        One :class:`ExportResult` per pair, precision-major: written, failed (``error``) or ``skipped``.
    """
    options = ExportOptions.build(options, **overrides)
    names = resolve_targets(targets)
    for precision in parse_precisions(precisions):
        pair = options.replace(precision=precision, **(per_precision or {}).get(precision, {}))
        todo = []
        for target in names:
            reason = skip(get_target(target), pair)
            if reason:
                yield ExportResult(target, precision, skipped=reason)
            else:
                todo.append(target)
        if not todo:
            continue
        try:
            yield from export_targets(weights, todo, pair, out=out, name=name)
        except Exception as exc:  # options, weights or calibration refused before any target: all of them
            LOGGER.debug("%s %s failed", ",".join(todo), precision, exc_info=True)
            yield from (ExportResult(target, precision, error=exc) for target in todo)
