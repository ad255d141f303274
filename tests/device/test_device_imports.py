"""The device folder (``lite_deploy/runtime``) and the device commands: no torch, only the primitives beside the
folder, no backend imported before it is needed, and Python 3.8 syntax and library calls throughout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

REPO = Path(__file__).resolve().parents[2]
DEVICE_FOLDER = REPO / "lite_deploy" / "runtime"
SESSION = Path(__file__).resolve().parent / "device_session.py"
# what the device folder may import of lite_deploy: itself and the primitives
ALLOWED = ("lite_deploy.runtime", "lite_deploy.spec", "lite_deploy.errors", "lite_deploy.io", "lite_deploy.boxes",
           "lite_deploy.version")
# backend modules that import their library at import time (the device install has no TFLite, for one)
LIBRARY_BACKENDS = ("lite_deploy.runtime.backends.onnxruntime.runtime", "lite_deploy.runtime.backends.openvino.runtime",
                    "lite_deploy.runtime.backends.tflite.runtime")


def _fresh(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter from the repository root."""
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def session() -> Dict[str, Any]:
    """device_session.py's report: every device command run once, then every device-folder module imported."""
    result = subprocess.run([sys.executable, str(SESSION)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_device_commands_and_every_device_module_import_no_torch(session: Dict[str, Any]) -> None:
    assert session["forbidden"] == [], session["forbidden"]
    modules = set(session["modules"])
    assert "lite_deploy.commands.predict" in modules and "lite_deploy.commands.build_engine" in modules
    missing = sorted(name for name in map(_module_name, DEVICE_FOLDER.rglob("*.py"))
                     if name not in modules and name not in LIBRARY_BACKENDS)
    assert not missing, f"device-folder modules the session did not import: {missing}"


def test_device_folder_imports_only_itself_and_the_primitives() -> None:
    code = (
        "import importlib, json, pkgutil, sys\n"
        "import lite_deploy.runtime as rt\n"
        f"skip = {LIBRARY_BACKENDS!r}\n"
        "for info in pkgutil.walk_packages(rt.__path__, rt.__name__ + '.'):\n"
        "    if info.name not in skip:\n"
        "        importlib.import_module(info.name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'lite_deploy')))))\n"
    )
    result = _fresh(code)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.splitlines()[-1])
    outside = [m for m in loaded if m != "lite_deploy" and not m.startswith(ALLOWED)]
    assert not outside, f"the device folder imports {outside}"


def test_public_api_and_listing_backends_import_no_backend() -> None:
    code = (
        "import sys\n"
        "import lite_deploy.runtime as rt\n"
        "from lite_deploy import Detector, Detections, Classifier, load_runtime, letterbox, nms, stream, profile\n"
        "from lite_deploy.runtime import JsonlSink, VideoSink\n"
        "assert '.engine' in rt.registered_suffixes() and '.pt' in rt.registered_suffixes()\n"
        "loaded = [m for m in ('torch', 'onnxruntime', 'openvino', 'ai_edge_litert', 'tensorrt') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = _fresh(code)
    assert result.returncode == 0, result.stderr


def test_device_side_needs_only_python_3_8(session: Dict[str, Any]) -> None:
    """vermin checks every lite_deploy module the device commands import and every file of the device folder, so a
    module joining the device side is checked without editing a list."""
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent))
    if vermin is None:
        pytest.skip("vermin is not installed (pip install 'lite-deploy[dev]')")
    files = sorted(set(session["files"]) | {str(p) for p in DEVICE_FOLDER.rglob("*.py")})
    for expected in ("cli.py", "commands/val.py", "runtime/check.py", "runtime/backends/tensorrt/build.py",
                     "runtime/backends/tflite/runtime.py", "spec.py"):
        assert any(f.endswith(expected) for f in files), expected
    result = subprocess.run([vermin, "-t=3.8-", "--no-tips", "--violations", *files], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
