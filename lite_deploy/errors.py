"""Exceptions raised for user errors, each with a message that says what to do.

Device side (Python >= 3.8): standard library only.
"""

from __future__ import annotations


class LiteDeployError(Exception):
    """Base class of every user-facing error; the CLI prints its message without a traceback."""


class BackendUnavailableError(LiteDeployError):
    """The backend a model needs is not installed (the message names the extra to install)."""


class UnsafeCheckpointError(LiteDeployError):
    """A weights file asks to import something that is not on the allowlist; nothing of it was executed."""


class CheckpointError(LiteDeployError):
    """A weights file is missing, corrupt, or of an unknown format."""


class ConfigError(LiteDeployError):
    """A model yaml is malformed: unknown module, bad ``from`` index, wrong arguments."""


class ExportError(LiteDeployError):
    """An export failed; no artifact was left behind."""


class VerificationError(ExportError):
    """An exported artifact disagrees with PyTorch beyond the tolerance for its precision."""


class DatasetError(LiteDeployError):
    """A dataset is malformed (the message gives file and line)."""


class EngineMismatchError(LiteDeployError):
    """A TensorRT engine was built for another TensorRT version or GPU; it must be rebuilt on the device."""


class ArtifactMismatchError(LiteDeployError):
    """An artifact's files are not the ones its sidecar recorded (e.g. an ``.xml`` with another export's ``.bin``)."""


class SpecError(LiteDeployError, ValueError):
    """A model spec (an artifact's ``.json`` sidecar or embedded spec) is not valid JSON or has a wrongly typed
    field."""
