"""Find which submodule of a torch model calls a given ATen operator (for export error messages)."""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode


class _OpRecorder(TorchDispatchMode):
    """Records the module path active when an ATen op named ``op`` (``aten::name``) first runs."""

    def __init__(self, op: str, stack: List[str]) -> None:
        super().__init__()
        self.op = op if "::" in op else f"aten::{op}"
        self.stack = stack
        self.found: Optional[str] = None

    def record(self) -> None:
        """Remember the innermost active module (first call wins)."""
        if self.found is None:
            self.found = self.stack[-1] if self.stack else ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: D105 (torch protocol)
        if func._schema.name == self.op:
            self.record()
        return func(*args, **(kwargs or {}))


class _FunctionRecorder(TorchFunctionMode):
    """The same at the Python level, for composite ops (``torch.linalg.svdvals``) that dispatch as other ATen ops."""

    def __init__(self, recorder: _OpRecorder) -> None:
        super().__init__()
        self.recorder = recorder
        self.name = recorder.op.split("::", 1)[1]

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105 (torch protocol)
        if getattr(func, "__name__", None) == self.name:
            self.recorder.record()
        return func(*args, **(kwargs or {}))


def locate_aten_op(model: nn.Module, sample: torch.Tensor, op: str) -> Optional[str]:
    """Dotted name and class of the innermost submodule of ``model`` that calls ``op``, e.g. ``model.9.cv1 (Conv)``.

    Args:
        model: the module that failed to export.
        sample: an input it accepts.
        op: ATen operator name, ``aten::linalg_svd`` or ``linalg_svd``.

    Returns:
        ``"<name> (<Class>)"``, ``"the top-level module"`` when no submodule is active, or ``None`` when the
        operator does not run on this input (or the model fails in eager mode).
    """
    stack: List[str] = []
    handles = []
    for name, module in model.named_modules():
        label = f"{name} ({type(module).__name__})" if name else "the top-level module"
        handles.append(module.register_forward_pre_hook(lambda m, a, label=label: stack.append(label) and None))
        handles.append(module.register_forward_hook(lambda m, a, o: stack.pop() and None))  # hooks must return None
    recorder = _OpRecorder(op, stack)
    try:
        with torch.no_grad(), _FunctionRecorder(recorder), recorder:
            model(sample)
    except Exception:  # the model itself may not run eagerly; then there is nothing to locate
        return recorder.found
    finally:
        for handle in handles:
            handle.remove()
    return recorder.found
