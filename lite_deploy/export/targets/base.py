"""What an export target is: its constraints as data (:class:`Target`), its build, and its outcome.

A target subclass declares what its format can hold (precisions, a dynamic batch, in-graph NMS, the ONNX opsets
its consumer parses, what must be installed to export and run it here) and builds its artifact from the export
job (:class:`lite_deploy.export.exporter.Job`: spec, tracing, calibration, verification and the accuracy gate).
:meth:`Target.check` turns the declarations into the refusals every target gets alike.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, List, Optional, Tuple

from ...errors import ExportError
from ..options import PRECISIONS, ExportOptions

if TYPE_CHECKING:
    from ...quantize.gate import GateResult
    from ...spec import ModelSpec
    from ..exporter import Job

LOGGER = logging.getLogger(__name__)


@dataclass
class Built:
    """A target's staged artifacts, main one first, each as (its files, main file first; the spec written beside it at
    commit), the seconds spent verifying and judging them, a note for the user and the accuracy gate's result."""

    artifacts: List[Tuple[List[Path], "ModelSpec"]]
    verify_s: float = 0.0
    note: str = ""
    gate: Optional["GateResult"] = None


@dataclass
class ExportResult:
    """One target x precision outcome: its artifact paths (main file first) and timings in seconds, or the error that
    stopped it (then nothing of it was written), or why it was skipped."""

    target: str
    precision: str = "fp32"
    files: List[Path] = field(default_factory=list)
    export_s: float = 0.0
    verify_s: float = 0.0
    note: str = ""
    gate: Optional["GateResult"] = None
    error: Optional[Exception] = None
    skipped: str = ""

    @property
    def ok(self) -> bool:
        """Whether the target was exported, verified and written."""
        return self.error is None and not self.skipped


class Target:
    """One export format. Subclasses set the class attributes and implement :meth:`build`.

    Attributes:
        name: the target's name (``--target``, result keys, benchmark rows).
        spec_target: :attr:`ModelSpec.target` of its artifacts (what the runtime opens them with).
        aliases: other names ``--target`` accepts for it.
        suffix: file name ending of the main artifact, after ``<stem><tag>``.
        precisions: the precisions it exports.
        fixed_batch: it needs a fixed batch size (no ``dynamic``).
        nms: it can end in NMS (``nms=True``); ``int8_nms``: also with ``precision="int8"``.
        max_opset: the newest ONNX opset its consumer parses (a warning beyond; ``None``: no limit).
        requires: ``(module, how to install it)`` needed to export to it and run it here.
    """

    name: ClassVar[str]
    spec_target: ClassVar[str]
    aliases: ClassVar[Tuple[str, ...]] = ()
    suffix: ClassVar[str]
    precisions: ClassVar[Tuple[str, ...]] = PRECISIONS
    fixed_batch: ClassVar[bool] = False
    nms: ClassVar[bool] = True
    int8_nms: ClassVar[bool] = False
    max_opset: ClassVar[Optional[int]] = None
    requires: ClassVar[Tuple[Tuple[str, str], ...]] = ()

    @classmethod
    def check(cls, options: ExportOptions) -> None:
        """Refuse options this target cannot honour (before anything of it is built).

        Raises:
            ExportError: a dynamic batch where it needs a fixed one, NMS it cannot end in, a precision it lacks.
        """
        if options.precision not in cls.precisions:
            raise ExportError(f"{cls.name} exports {', '.join(cls.precisions)}, not {options.precision}")
        if cls.fixed_batch and options.dynamic:
            raise ExportError(f"{cls.label()} needs a fixed batch size: export it with --batch N instead of --dynamic")
        if options.nms and not cls.nms:
            raise ExportError(f"in-graph NMS is not available for {cls.label()}: export it without --nms")
        if options.nms and options.precision == "int8" and not cls.int8_nms:
            raise ExportError("--int8 with --nms is TensorRT-only (EfficientNMS): export this target's INT8 without "
                              "--nms (NMS runs on the host)")
        if cls.max_opset is not None and options.opset > cls.max_opset:
            LOGGER.warning("opset %d: %s parses ONNX opsets up to %d only", options.opset, cls.label(), cls.max_opset)

    @classmethod
    def unavailable(cls) -> str:
        """Why this target cannot be exported and run here (``""`` when it can)."""
        for module, hint in cls.requires:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed ({hint})"
        return ""

    @classmethod
    def label(cls) -> str:
        """The format's name in messages."""
        return cls.__name__

    def filename(self, stem: str, options: ExportOptions) -> str:
        """The main artifact's file name: ``<stem><tag><suffix>``."""
        return f"{stem}{options.tag}{self.suffix}"

    def build(self, job: "Job") -> Built:
        """Export, verify and judge this target's artifact into the job's staging folder."""
        raise NotImplementedError
