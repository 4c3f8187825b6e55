#!/usr/bin/env bash
# Build a YOLOX TensorRT engine and its Triton model (plus the image-in detection ensemble)
# from a YOLOX checkpoint, with trt-convert and configs/yolox_<variant>.yaml.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: scripts/export_trt_engine.sh --ckpt FILE [options] [-- extra trt-convert flags]

Writes <repo>/<name>/1/model.plan and <repo>/<name>/config.pbtxt (the engine) and the
<name>_detector ensemble with its pre/post-processing models.

Options:
  --ckpt FILE            YOLOX checkpoint (.pth; official {"model": state_dict} or a plain state_dict)
  --variant V            nano | tiny | s | m | l | x                        [s]
  --fp16                 FP16 engine (mixed precision decided in the ONNX graph)
  --int8                 INT8 engine with explicit Q/DQ; needs --calib-images
  --calib-images DIR     folder of representative images for INT8 calibration
  --max-batch-size N     Triton max_batch_size and the engine profile's max batch   [8]
  --workspace SIZE       TensorRT workspace limit, bytes or K/M/G suffix            [2G]
  --repo DIR             Triton model repository to write into                      [./triton_models_out]
  --name NAME            model name in the repository                               [yolox]
  --overwrite            replace existing outputs
  -h, --help             show this help
Anything after "--" is passed to trt-convert unchanged (e.g. -- --model-kwargs '{"num_classes": 3}').
trt-convert is found as: $TRT_CONVERT, trt-convert on PATH, <checkout>/.venv/bin/trt-convert,
or python3 -m trt_converters.cli.
USAGE
}

fail() { echo "export_trt_engine.sh: $*" >&2; exit 2; }

need_value() { [[ $# -ge 2 && -n "$2" && "$2" != --* ]] || fail "$1 needs a value (see --help)"; }

ckpt="" variant="s" precision=() calib="" int8=0 max_batch=8 workspace="2G"
repo="./triton_models_out" name="yolox" overwrite=() extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --ckpt) need_value "$@"; ckpt="$2"; shift 2 ;;
        --variant) need_value "$@"; variant="$2"; shift 2 ;;
        --fp16) precision+=(--use-fp16); shift ;;
        --int8) int8=1; shift ;;
        --calib-images) need_value "$@"; calib="$2"; shift 2 ;;
        --max-batch-size) need_value "$@"; max_batch="$2"; shift 2 ;;
        --workspace) need_value "$@"; workspace="$2"; shift 2 ;;
        --repo) need_value "$@"; repo="$2"; shift 2 ;;
        --name) need_value "$@"; name="$2"; shift 2 ;;
        --overwrite) overwrite=(--overwrite); shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) fail "unknown option '$1' (see --help)" ;;
    esac
done

case "$variant" in nano|tiny|s|m|l|x) ;; *) fail "unknown variant '$variant'; use nano, tiny, s, m, l or x" ;; esac
if [[ $int8 -eq 1 ]]; then
    [[ -n "$calib" ]] || fail "--int8 needs --calib-images DIR (a folder of representative images)"
    [[ -d "$calib" ]] || fail "--calib-images '$calib' is not a directory"
    precision+=(--use-int8 --calib-data "$calib")
elif [[ -n "$calib" ]]; then
    fail "--calib-images is only used with --int8"
fi
[[ -n "$ckpt" ]] || fail "--ckpt FILE is required (the YOLOX .pth checkpoint)"
[[ -f "$ckpt" ]] || fail "checkpoint '$ckpt' not found"
[[ "$max_batch" =~ ^[1-9][0-9]*$ ]] || fail "--max-batch-size must be a positive integer, got '$max_batch'"
[[ "$workspace" =~ ^[0-9]+([KMGkmg]i?[Bb]?)?$ ]] || fail "--workspace must be bytes or a K/M/G size like 2G, got '$workspace'"
[[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || fail "--name '$name' may hold only letters, digits, '_', '.', '-'"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
config="$here/../configs/yolox_${variant}.yaml"
[[ -f "$config" ]] || fail "config '$config' is missing from this checkout"
# $TRT_CONVERT, else trt-convert on PATH, else this checkout's .venv, else python3 -m trt_converters.cli
if [[ -n "${TRT_CONVERT:-}" ]]; then
    read -r -a convert <<< "$TRT_CONVERT"
elif command -v trt-convert >/dev/null 2>&1; then
    convert=(trt-convert)
elif [[ -x "$here/../.venv/bin/trt-convert" ]]; then
    convert=("$here/../.venv/bin/trt-convert")
else
    convert=(python3 -m trt_converters.cli)
fi

command=("${convert[@]}" --config "$config" --ckpt-path "$ckpt" --triton-repo "$repo"
         --model-name "$name" --pipeline-name "${name}_detector"
         --generate-onnx --generate-trt --generate-triton-config --triton-backend tensorrt_plan
         --max-batch-size "$max_batch" --memory-pool-limit "$workspace"
         ${precision[@]+"${precision[@]}"} ${overwrite[@]+"${overwrite[@]}"} ${extra[@]+"${extra[@]}"})
printf '%q ' "${command[@]}"; echo
exec "${command[@]}"
