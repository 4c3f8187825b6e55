"""Stage seconds of a base-size conversion, end to end: RoBERTa-base (random weights) with --use-fp16 and with
--use-int8 on 64 calibration samples: export, FP32 verification, lowering (+ its verification) and the
TensorRT-RTX build, from the CLI's own report.json, plus the CLI's wall time and the load average. (The Triton
config is left out: the family's classifier pipeline needs a tokenizer that random weights do not come with.)

    python benchmarks/conversion_speed.py --label after     # this checkout
    /other/venv/bin/python benchmarks/conversion_speed.py --label before   # the code that venv imports
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_WORK, RESULTS, convert, load_average, machine_line, prepare  # noqa: E402

# INT8 with a loose budget: random weights calibrated at one sequence length miss the default INT8 budget at the
# shortest verification shapes (before and after alike), and a failed run writes no report to time.
PRECISIONS = {"fp16": ["--use-fp16"],
              "int8": ["--use-int8", "--calib-samples", "64", "--atol", "1", "--rtol", "1", "--min-cosine", "0.9"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--precisions", default="fp16,int8")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    args = parser.parse_args()
    import trt_converters

    prepared = prepare("roberta", "base", args.work)
    results = {"label": args.label, "code": str(Path(trt_converters.__file__).parent), "machine": machine_line(),
               "runs": {}}
    for precision in args.precisions.split(","):
        out = args.work / "speed" / args.label / precision
        before = load_average()
        report, wall = convert(prepared, out, ["--generate-onnx", "--generate-trt", *PRECISIONS[precision]],
                               log_path=out.with_suffix(".log"))
        stages = {name: entry.get("seconds") for name, entry in report["stages"].items()}
        lowered = report["stages"].get(f"lower_{precision}", {})
        stages["lower_verify"] = (lowered.get("verify") or {}).get("seconds")
        results["runs"][precision] = {"wall_s": round(wall, 1), "stages": stages, "load_before": before,
                                      "load_after": load_average()}
        print(json.dumps({precision: results["runs"][precision]}), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"conversion_speed_{args.label}.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
