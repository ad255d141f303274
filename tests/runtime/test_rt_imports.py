"""The device side never imports torch, and stays Python 3.8 compatible."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_runtime_does_not_import_torch():
    code = (
        "import sys\n"
        "import lite_deploy, lite_deploy.runtime, lite_deploy.commands.predict\n"
        "from lite_deploy import Detector, Detections, Classifier, load_runtime, letterbox, nms\n"
        "import lite_deploy.runtime.onnxruntime, lite_deploy.runtime.openvino, lite_deploy.runtime.tflite\n"
        "import lite_deploy.runtime.tensorrt.compat, lite_deploy.runtime.tensorrt.cuda, lite_deploy.runtime.tensorrt.build, lite_deploy.runtime.tensorrt.engine, lite_deploy.runtime.tensorrt.verify\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'lite_deploy.models')))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_listing_backends_imports_none():
    code = (
        "import sys\n"
        "import lite_deploy.runtime as rt\n"
        "assert '.engine' in rt.registered_suffixes()\n"
        "loaded = [m for m in ('onnxruntime', 'openvino', 'ai_edge_litert', 'tensorrt') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_device_side_needs_only_python_3_8():
    """vermin checks every lite_deploy module that the device commands import (tests/device/device_session.py
    runs each of them), so a module joining the device side is checked without editing a list."""
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent))
    if vermin is None:
        pytest.skip("vermin is not installed (pip install 'lite-deploy[dev]')")
    session = subprocess.run([sys.executable, str(REPO / "tests" / "device" / "device_session.py")], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert session.returncode == 0, session.stdout + session.stderr
    files = json.loads(session.stdout.splitlines()[-1])["files"]
    for expected in ("cli.py", "commands/val.py", "export/check.py", "runtime/tensorrt/build.py", "spec.py"):
        assert any(f.endswith(expected) for f in files), expected
    result = subprocess.run([vermin, "-t=3.8-", "--no-tips", "--violations", *files], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
