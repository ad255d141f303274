"""Nothing the device runs imports torch: every device command in a fresh interpreter (device_session.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SESSION = Path(__file__).resolve().parent / "device_session.py"


def test_device_commands_import_no_torch() -> None:
    result = subprocess.run([sys.executable, str(SESSION)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert "lite_deploy.commands.predict" in report["modules"] and "lite_deploy.runtime.tensorrt.build" in report["modules"]
    assert report["forbidden"] == [], report["forbidden"]
