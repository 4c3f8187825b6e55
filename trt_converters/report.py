"""The conversion report: JSON beside the artifacts and a short table on the terminal."""

from __future__ import annotations

import json
import platform


def tool_versions() -> dict:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in ("trt-converters", "torch", "onnx", "onnxruntime", "onnxscript", "tensorrt", "tensorrt-rtx",
                    "nvidia-modelopt", "tritonclient", "transformers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def render_json(report: dict) -> str:
    return json.dumps(report, indent=2, default=str) + "\n"


def render_table(report: dict) -> str:
    """One line per stage: what it wrote, how big, how long, its peak resident memory, and how close to PyTorch."""
    rows = [("stage", "artifact", "size", "time", "peak RSS", "max rel err / min cos")]
    if "peak_rss_mb" in report.get("model", {}):
        rows.append(("load", "", "", "", _megabytes(report["model"]["peak_rss_mb"]), ""))
    for stage, entry in report.get("stages", {}).items():
        verify = entry.get("verify") or (report["stages"].get("verify_fp32") if stage == "export" else None)
        accuracy = ""
        if verify:
            outputs = verify["outputs"]
            accuracy = (f"{max(o['max_rel_error'] for o in outputs):.1e} / "
                        f"{min(o['cosine'] for o in outputs):.6f}")
        if stage in ("verify_fp32", "reference_check"):
            continue
        size = f"{entry['bytes'] / 2**20:.1f} MiB" if "bytes" in entry else ""
        seconds = f"{entry['seconds']:.1f} s" if "seconds" in entry else ""
        artifact = entry.get("path") or (f"{entry['repository']}/{entry['model']}" if "repository" in entry else "")
        rows.append((stage, artifact, size, seconds, _megabytes(entry.get("peak_rss_mb")), accuracy))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _megabytes(value) -> str:
    return "" if value is None else f"{value:,.0f} MiB"
