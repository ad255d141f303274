#!/usr/bin/env bash
# Create .venv beside the checkout and install lite-deploy with every CPU backend and the test tools.
# torch is pinned first: these machines carry that release as local files (a plain `torch` downloads gigabytes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install -q -e '.[all,dev]' 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import lite_deploy, torch, onnxruntime, openvino, ai_edge_litert" \
  || { echo "setup failed: see pip's messages above" >&2; exit 1; }
