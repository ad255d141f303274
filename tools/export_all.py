"""Export every bundled config (random weights) and the given checkpoints to every target in FP32 and FP16.

    python tools/export_all.py [--imgsz 320] [--target onnx,openvino,tflite,trt] [--precision fp32,fp16]
                               [--out DIR] [WEIGHTS.pt ...]

Each export is verified against PyTorch by the exporter itself; the table gives status, export and
verification seconds and artifact size. Failures are listed with their one-sentence reason; the exit status is
1 if any export failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="*", help="extra checkpoints to include")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--target", default="onnx,openvino,tflite,trt", help="comma-separated targets or all")
    parser.add_argument("--precision", default="fp32,fp16", help="comma-separated precisions (int8 needs calibration)")
    parser.add_argument("--out", help="keep the artifacts here (default: a temporary folder)")
    args = parser.parse_args()

    import torch
    from tqdm import tqdm

    from lite_deploy.export.each import export_each
    from lite_deploy.export.options import parse_precisions
    from lite_deploy.export.targets import resolve_targets
    from lite_deploy.models import list_configs

    logging.basicConfig(level=logging.ERROR)
    torch.manual_seed(0)
    models = list_configs() + list(args.weights)
    pairs = len(resolve_targets(args.target)) * len(parse_precisions(args.precision))
    rows, failures = [], []
    with tempfile.TemporaryDirectory() as tmp, tqdm(total=len(models) * pairs, desc="export", unit="artifact") as bar:
        out_root = Path(args.out or tmp)
        for model in models:
            name = Path(model).stem
            for result in export_each(model, args.target, args.precision, imgsz=args.imgsz, out=out_root / name):
                bar.update()
                if not result.ok:
                    rows.append((name, result.target, result.precision, "FAIL", 0.0, 0.0, 0.0))
                    failures.append(f"{name} {result.target} {result.precision}: {str(result.error).splitlines()[0]}")
                    continue
                size = sum(f.stat().st_size for f in result.files if f.suffix != ".json") / 1e6
                status = "onnx only" if result.target == "trt" and result.note else "ok"
                rows.append((name, result.target, result.precision, status, result.export_s, result.verify_s, size))
    print(f"\n{'model':<26} {'target':<9} {'prec':<5} {'status':<10} {'export s':>9} {'verify s':>9} {'MB':>7}")
    for name, target, precision, status, export_s, verify_s, size in rows:
        print(f"{name:<26} {target:<9} {precision:<5} {status:<10} {export_s:9.1f} {verify_s:9.1f} {size:7.2f}")
    for line in failures:
        print("failed:", line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
