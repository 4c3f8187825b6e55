#!/usr/bin/env bash
# GPU CI runner for trt-converters: run inside an image with an NVIDIA GPU, the datacenter TensorRT
# (`import tensorrt`) and Triton with the tensorrt backend (e.g. the serving image from Dockerfile.caption).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/gpu_ci.sh [options]

What a GPU CI runner executes, in order:
  1. preflight: nvidia-smi, torch.cuda, `import tensorrt` (the datacenter TensorRT, not TensorRT-RTX),
     tritonserver; prints versions; fails with one line if the GPU or TensorRT is missing.
  2. for each configs/*.yaml: a tiny random-weight variant (--model-kwargs overrides below), converted by
     `trt-convert --generate-onnx --generate-trt --trt-backend tensorrt --device cuda
      --generate-triton-config --triton-backend tensorrt_plan` at each precision (fp32, fp16, int8),
     into one Triton repository (model name <config>_<precision>; the config's pipeline keys are
     dropped: tokenizers and label files are not part of CI).
  3. pytest -m gpu tests/gpu/test_engines_on_gpu.py: every engine run with the TensorRT Python API
     against PyTorch on CUDA within the precision budgets (FP32 / FP16 / INT8 tolerances of
     trt_converters.verify), fixture models too, and trt-bench timing an engine.
  4. the same test module starts tritonserver on 127.0.0.1 with the tensorrt_plan repository and
     queries every model over HTTP.
  5. optional (--bench): benchmarks/cpu_models.py --device cuda --size tiny -> the GPU table
     (PyTorch eager FP32/FP16, torch.compile, TensorRT engines at batch 1/8/32).

Options:
  --out DIR          work folder (default: ./gpu_ci_out); cleaned first
  --configs "A B"    config names without .yaml (default: every configs/*.yaml)
  --precisions "P"   default "fp32 fp16 int8"
  --python PATH      interpreter with trt-converters installed (default: python3)
  --tritonserver P   tritonserver binary (default: tritonserver on PATH, /opt/tritonserver/bin/tritonserver)
  --skip-triton      do not start Triton (steps 1-3 only)
  --bench            also produce the GPU benchmark table (step 5)
  -h, --help         this text

Exit status: 0 all passed; 1 a conversion, comparison or query failed; 2 a usage or environment error.
Every conversion's log is kept in OUT/logs/.
EOF
}

die() { echo "error: $*" >&2; exit 2; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$PWD/gpu_ci_out"
CONFIGS=""
PRECISIONS="fp32 fp16 int8"
PYTHON="python3"
TRITONSERVER=""
SKIP_TRITON=0
BENCH=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --out) OUT="$2"; shift 2 ;;
    --configs) CONFIGS="$2"; shift 2 ;;
    --precisions) PRECISIONS="$2"; shift 2 ;;
    --python) PYTHON="$2"; shift 2 ;;
    --tritonserver) TRITONSERVER="$2"; shift 2 ;;
    --skip-triton) SKIP_TRITON=1; shift ;;
    --bench) BENCH=1; shift ;;
    *) usage >&2; die "unknown option $1" ;;
  esac
done

# Tiny architecture overrides per config: same IO (names, dtypes, output widths), far fewer parameters.
TINY_TEXT='"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128'
tiny_kwargs() {
  case "$1" in
    deberta_caption) echo "{\"pooling\": \"mean\", \"num_outputs\": 1, $TINY_TEXT}" ;;
    deberta_classifier) echo "{\"num_labels\": 2, $TINY_TEXT}" ;;
    e5_small_v2|minilm_l6) echo "{$TINY_TEXT}" ;;
    gector_roberta) echo "{\"encoder_type\": \"roberta\", $TINY_TEXT}" ;;
    roberta_emotion) echo "{\"num_labels\": 4, $TINY_TEXT}" ;;
    yolox_nano) echo '{"variant": "nano"}' ;;
    yolox_*) echo '{"variant": "nano"}' ;;   # nano at the config's input size: same anchors and outputs
    crnn_line) echo '{"hidden_size": 32, "channels": [8, 16, 32, 32]}' ;;
    *) echo '{}' ;;                          # trocr_*: the config's small-printed sizes
  esac
}

# ---- 1. preflight -------------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "python interpreter '$PYTHON' not found (--python)"
command -v nvidia-smi >/dev/null || die "nvidia-smi not found: this runner needs an NVIDIA GPU and driver"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || die "nvidia-smi failed"
"$PYTHON" - <<'EOF' || die "the preflight check failed (see above)"
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("torch.cuda.is_available() is False")
try:
    import tensorrt
except ImportError as exc:
    sys.exit(f"the datacenter TensorRT is not importable ({exc}); pip install tensorrt or use the TensorRT image")
import onnxruntime, trt_converters
print(f"GPU {torch.cuda.get_device_name(0)}; torch {torch.__version__}; tensorrt {tensorrt.__version__}; "
      f"onnxruntime {onnxruntime.__version__} {onnxruntime.get_available_providers()}")
EOF
if [[ $SKIP_TRITON -eq 0 ]]; then
  if [[ -z "$TRITONSERVER" ]]; then
    TRITONSERVER="$(command -v tritonserver || true)"
    [[ -z "$TRITONSERVER" && -x /opt/tritonserver/bin/tritonserver ]] && TRITONSERVER=/opt/tritonserver/bin/tritonserver
  fi
  [[ -x "$TRITONSERVER" ]] || die "tritonserver not found (--tritonserver PATH, or --skip-triton)"
fi

rm -rf "$OUT"
mkdir -p "$OUT/logs" "$OUT/runs" "$OUT/repo"
if [[ -z "$CONFIGS" ]]; then
  CONFIGS="$(cd "$ROOT/configs" && ls *.yaml | sed 's/\.yaml$//' | tr '\n' ' ')"
fi

# ---- 2. tiny variants: checkpoint, convert, package -----------------------------------------------
failures=0
for config in $CONFIGS; do
  yaml="$ROOT/configs/$config.yaml"
  [[ -f "$yaml" ]] || die "no config $yaml"
  kwargs="$(tiny_kwargs "$config")"
  ckpt="$OUT/runs/$config.pt"
  derived="$OUT/runs/$config.yaml"
  script="$("$PYTHON" - "$yaml" "$kwargs" "$ckpt" "$derived" <<'EOF'
import json, sys
from pathlib import Path
import torch, yaml
from trt_converters.loading import construct_model, import_model_class
from trt_converters.options import read_config_file
config = read_config_file(Path(sys.argv[1]))  # relative paths resolved
kwargs = {**config.get("model_kwargs", {}), **json.loads(sys.argv[2])}
torch.manual_seed(0)
model = construct_model(import_model_class(Path(config["model_script_path"]), config["model_class_name"]), kwargs)
torch.save(model.state_dict(), sys.argv[3])
# The same config without its pre/post-processing pipeline (tokenizers and label files are not part of CI).
derived = {k: v for k, v in config.items() if k not in ("pipeline", "pipeline_options", "pipeline_name")}
Path(sys.argv[4]).write_text(yaml.safe_dump(derived, sort_keys=False))
print(config["model_script_path"])
EOF
)" || { echo "FAIL $config: could not build the tiny checkpoint"; failures=$((failures + 1)); continue; }
  for precision in $PRECISIONS; do
    case "$precision" in
      fp32) flags=() ;;
      fp16) flags=(--use-fp16) ;;
      int8) flags=(--use-int8 --calib-samples 16) ;;
      *) die "unknown precision $precision" ;;
    esac
    run="$OUT/runs/${config}_${precision}"
    mkdir -p "$run"
    printf '{"model_script_path": "%s", "config": "%s"}\n' "$script" "$yaml" > "$run/ci.json"
    echo "== $config $precision"
    if "$PYTHON" -m trt_converters.cli --config "$derived" --ckpt-path "$ckpt" --model-kwargs "$kwargs" \
        --model-name "${config}_${precision}" --generate-onnx --generate-trt --trt-backend tensorrt \
        --device cuda --generate-triton-config --triton-backend tensorrt_plan --triton-repo "$OUT/repo" \
        --output-dir "$run" --overwrite "${flags[@]}" > "$OUT/logs/${config}_${precision}.log" 2>&1; then
      echo "   ok"
    else
      echo "FAIL $config $precision: $(grep '^error:' "$OUT/logs/${config}_${precision}.log" | head -1)"
      failures=$((failures + 1))
    fi
  done
done

# ---- 3 + 4. engines vs PyTorch on the GPU; Triton serving the tensorrt_plan repository --------------
export TRTC_GPU_CI_OUT="$OUT/runs" TRTC_GPU_CI_REPO="$OUT/repo" TRTC_TRT_BACKEND=tensorrt
if [[ $SKIP_TRITON -eq 0 ]]; then export TRTC_TRITONSERVER="$TRITONSERVER"; fi
test_args=(-m gpu -p no:cacheprovider -q -rs "$ROOT/tests/gpu/test_engines_on_gpu.py")
[[ $SKIP_TRITON -eq 1 ]] && test_args+=(-k "not triton")
(cd "$ROOT" && "$PYTHON" -m pytest "${test_args[@]}") || failures=$((failures + 1))

# ---- 5. optional GPU benchmark table --------------------------------------------------------------
if [[ $BENCH -eq 1 ]]; then
  (cd "$ROOT" && "$PYTHON" benchmarks/cpu_models.py --device cuda --size tiny --batch-sizes 1,8,32 \
     --work "$OUT/bench" --output gpu_models) || failures=$((failures + 1))
fi

if [[ $failures -gt 0 ]]; then
  echo "gpu_ci: $failures step(s) failed; logs in $OUT/logs" >&2
  exit 1
fi
echo "gpu_ci: all passed"
