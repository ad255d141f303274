"""The first check of every weights file: its container, told from the bytes alone, before any torch call.

``torch.load`` hands a zip that looks like a TorchScript archive to ``torch.jit.load``, which runs the archive's
code (a module's ``__setstate__`` can write files) before any unpickler allowlist is consulted. So a weights file
is accepted only as one of:

- a plain ``torch.save`` zip: one top folder holding ``data.pkl``, its storages ``data/<n>`` (stored, not
  compressed) and torch's bookkeeping records (``version``, ``byteorder`` ...), nothing else;
- a legacy (pre-1.6) ``torch.save`` pickle stream, which the allowlisted unpickler reads.

TorchScript archives (``constants.pkl``, ``code/``, ``.data/version``, ``model.json``), extra pickles, other
entries, compressed entries and the pre-1.0 tar format are refused.
"""

from __future__ import annotations

import os
import re
import tarfile
import zipfile
from pathlib import Path
from typing import List, Union

from ..errors import CheckpointError, UnsafeCheckpointError

# torch.save's records beside data.pkl (torch 1.6 to 2.x)
_BOOKKEEPING = {"version", ".format_version", ".storage_alignment", "byteorder", ".data/serialization_id"}
_STORAGE_RECORD = re.compile(r"data/\d+")
_TORCHSCRIPT_HINTS = ("constants.pkl", "code/", ".data/version", "model.json", "attributes.pkl", "extra/")


def _is_plain_record(name: str) -> bool:
    """Whether ``name`` (relative to the archive's top folder) is one torch.save writes."""
    return name == "data.pkl" or name in _BOOKKEEPING or bool(_STORAGE_RECORD.fullmatch(name))


def is_plain_layout(records: List[str]) -> bool:
    """Whether ``records`` (names relative to the top folder) are exactly what torch.save writes."""
    return records.count("data.pkl") == 1 and all(_is_plain_record(r) for r in records)


def is_zip(path: Union[str, Path]) -> bool:
    """Whether torch.load reads ``path`` as a zip (its first bytes are a zip local header)."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def check_weights_file(path: Union[str, Path]) -> None:
    """Refuse ``path`` unless it is a plain ``torch.save`` zip or a legacy pickle stream (see the module text).

    Reads only the zip directory (Python's ``zipfile``); nothing of the file is unpickled or run.

    Raises:
        CheckpointError: missing file, unreadable zip, or the pre-1.0 tar format.
        UnsafeCheckpointError: a TorchScript archive or any zip layout other than a plain checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} does not exist")
    if not is_zip(path):  # torch.load reads anything else as a pickle stream (or a tar)
        if tarfile.is_tarfile(path):
            raise CheckpointError(f"{path} is in the pre-1.0 PyTorch tar format; re-save it with a current torch.save")
        return
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (broken zip: {exc})") from None
    names = [info.filename for info in infos]
    top = names[0].split("/", 1)[0] if names else ""
    inside = [name[len(top) + 1:] if name.startswith(top + "/") else name for name in names]
    script = next((n for n in inside if n.startswith(_TORCHSCRIPT_HINTS)), None)
    if script is not None:
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it is a TorchScript archive (it holds '{top}/{script}'), whose code would run "
            "on loading; give a torch.save checkpoint (state_dict, lite-deploy or YOLOv5 train.py file) instead"
        )
    odd = next((full for n, full in zip(inside, names) if full == n or not _is_plain_record(n)), None)
    if odd is not None or not is_plain_layout(inside) or len(set(names)) != len(names):
        what = f"the entry '{odd}'" if odd is not None else "not exactly one data.pkl"
        raise UnsafeCheckpointError(
            f"refusing to load {path}: its zip layout is not a plain torch.save checkpoint ({what}); "
            "give a checkpoint written by torch.save"
        )
    packed = next((i.filename for i in infos if i.compress_type != zipfile.ZIP_STORED), None)
    declared = sum(i.file_size for i in infos)
    if packed is not None or declared > os.path.getsize(path):
        raise UnsafeCheckpointError(
            f"refusing to load {path}: its zip entries are compressed or declare more bytes ({declared}) than the "
            "file holds, which torch.save never writes; give a checkpoint written by torch.save"
        )
