"""Files shipped inside the package: the bundled demo detector.

The demo detector is a ShuffleNetV2 x0.5 + GSConvns YOLO model trained with ``lite-deploy train`` on the synthetic
shapes set (``lite-deploy dataset shapes``); its recipe and validation mAP are in the README.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEMO_WEIGHTS = ASSETS_DIR / "shapes-demo.pt"
DEMO_DATA_IMGSZ = 224  # the size in pixels the demo's shapes set is generated at (and the detector trained at)
DEMO_IMGSZ = 320  # the demo detector's input size in pixels: the 224-px images upscaled, small shapes resolved


def demo_weights() -> Path:
    """Path of the bundled demo detector's checkpoint (this project's format).

    Raises:
        CheckpointError: the file is not in the installed package.
    """
    if not DEMO_WEIGHTS.is_file():
        raise CheckpointError(
            f"the bundled demo detector {DEMO_WEIGHTS} is missing; reinstall lite-deploy "
            "(pip install -e .) or pass your own weights"
        )
    return DEMO_WEIGHTS
