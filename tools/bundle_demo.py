"""Make a training run's ``best.pt`` the bundled demo detector (``lite_deploy/assets/shapes-demo.pt``).

The checkpoint is copied with its weights, metrics and training settings unchanged; only the machine-specific paths
in its provenance are replaced by the command that recreates the dataset, so the shipped file names no local folder,
and it records the size the demo serves at (DEMO_IMGSZ, what val, predict and export use by default).

    python tools/bundle_demo.py runs/train/demo --imgsz 224
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import torch

from lite_deploy.assets import DEMO_IMGSZ, DEMO_WEIGHTS
from lite_deploy.io import atomic_write_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="training run folder (with weights/best.pt)")
    parser.add_argument("--imgsz", type=int, required=True, help="the size the shapes set was generated at")
    args = parser.parse_args()
    ckpt = torch.load(args.run / "weights" / "best.pt", map_location="cpu", weights_only=True)
    dataset = f"lite-deploy dataset shapes shapes --imgsz {args.imgsz} (seed 0: 2000 train, 400 val)"
    ckpt["provenance"]["data"] = dataset
    config = ckpt["extra"]["train_config"]
    config.update(data=dataset, project="runs/train", name="demo")
    ckpt["serve_imgsz"] = [DEMO_IMGSZ, DEMO_IMGSZ]
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    atomic_write_bytes(DEMO_WEIGHTS, buffer.getvalue())
    metrics = ckpt["provenance"]["metrics"]
    print(f"{DEMO_WEIGHTS}: {len(buffer.getvalue()) / 1e6:.1f} MB, epoch {ckpt['provenance']['epoch']}, "
          f"mAP50 {metrics['map50']:.3f}, mAP50-95 {metrics['map50_95']:.3f}")


if __name__ == "__main__":
    main()
