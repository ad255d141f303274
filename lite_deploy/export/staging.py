"""Staging of unverified artifacts beside the output folder, and their commit into it.

Every artifact is written into a hidden folder beside the output folder first (:func:`staging_dir`), verified
there, and moved in by :func:`commit` only when it passed: a failed export leaves nothing behind, and a killed one
leaves a folder that the next export into the same place removes (:func:`remove_stale_staging`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple

from ..spec import ModelSpec, file_records, sidecar_path

LOGGER = logging.getLogger(__name__)


def staging_dir(out_dir: Path, kind: str) -> Path:
    """A new hidden folder beside ``out_dir`` for files not yet verified: ``.<out>.<kind>.<pid>.<random>``.

    It lies on the output folder's file system (so committing is a rename), and it names the process that owns
    it, so that :func:`remove_stale_staging` can tell the leftovers of a killed export from a running one's.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.{kind}.{os.getpid()}.", dir=str(out_dir.parent)))


def remove_stale_staging(out_dir: Path) -> List[Path]:
    """Remove the staging and working folders (:func:`staging_dir`) that exports into ``out_dir`` left beside it
    when they were killed (their process is gone); those of running exports are kept. Returns the removed ones."""
    pattern = re.compile(rf"\.{re.escape(out_dir.name)}\.(?:staging|work)\.(\d+)\.")
    stale = []
    if out_dir.parent.is_dir():
        for path in out_dir.parent.iterdir():
            match = pattern.match(path.name)
            if match and path.is_dir() and not _process_alive(int(match.group(1))):
                shutil.rmtree(path, ignore_errors=True)
                stale.append(path)
    if stale:
        LOGGER.info("removed %d unverified folder(s) left by interrupted exports into %s: %s", len(stale), out_dir,
                    ", ".join(p.name for p in stale))
    return stale


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on Windows, where a signal would end it, every process counts as alive)."""
    if pid == os.getpid() or os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    """While exporting in the main thread, SIGTERM (``kill``, ``timeout``) raises SystemExit, so that the staging
    folders are removed as on any error; SIGKILL cannot be caught (see :func:`remove_stale_staging`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def commit(artifacts: Sequence[Tuple[Sequence[Path], ModelSpec]], out_dir: Path) -> List[Path]:
    """Write each staged artifact's sidecar and move its files into ``out_dir`` (each with an atomic rename).

    Args:
        artifacts: ``(files, spec)`` per artifact, its main file first (an OpenVINO ``.xml`` then its ``.bin``).

    Returns:
        The committed paths, per artifact its files then its sidecar.

    Each sidecar records the size and SHA-256 of its artifact's files (:attr:`ModelSpec.files`) and is moved in
    before them: a commit interrupted over an earlier export of the same name leaves a sidecar that does not match
    the files beside it, which :func:`lite_deploy.runtime.load_runtime` refuses, never a mix of two exports that loads.
    """
    sidecars, order = [], []
    for files, spec in artifacts:
        sidecar = spec.replace(files=file_records(files[0])).save(sidecar_path(files[0]))
        sidecars.append(sidecar)
        order += [*files, sidecar]
    out_dir.mkdir(parents=True, exist_ok=True)
    umask = os.umask(0)
    os.umask(umask)
    for f in sidecars + [f for f in order if f not in sidecars]:
        f.chmod(0o666 & ~umask)  # temporary files are created private
        f.replace(out_dir / f.name)
    return [out_dir / f.name for f in order]
