"""Heartbeats of long opaque calls: the lines, when they start, the helper thread's end, the cost estimates.

Time is a fake clock the test moves; no assertion depends on how fast anything runs.
"""

from __future__ import annotations

import threading

import pytest

from trt_converters import progress


class FakeClock:
    """Moves `step` seconds each time it is read."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_progress_line_says_time_left_then_how_far_past():
    assert progress.progress_line("FP16 by ModelOpt AutoCast", 10.2, 26.0) == \
        "FP16 by ModelOpt AutoCast: 10 s so far, about 16 s left"
    assert progress.progress_line("x", 25.8, 26.0) == "x: 26 s so far, about 1 s left"
    assert progress.progress_line("x", 40.0, 26.0) == "x: 40 s so far, past the 26 s estimated"
    assert progress.progress_line("export", 12.0, None) == "export: 12 s so far"


def test_heartbeat_prints_nothing_without_a_reporter():
    before = threading.active_count()
    with progress.heartbeat("quiet", 5.0, clock=FakeClock(100.0), poll_s=0.001):
        assert threading.active_count() == before  # no helper thread when nobody is told


def test_heartbeat_lines_after_the_first_interval_and_a_closing_line():
    lines: list[str] = []
    seen_two = threading.Event()

    def log(line: str) -> None:
        lines.append(line)
        if len(lines) >= 2:
            seen_two.set()

    before = threading.active_count()
    with progress.reporting(log):
        # each clock read moves 4 s; started at 4, then elapsed 4, 8 (quiet), 12 (a line, next due at 22), 16, 20, 24
        with progress.heartbeat("calibration", 30.0, clock=FakeClock(4.0), first_s=10.0, every_s=10.0,
                                poll_s=0.001):
            assert seen_two.wait(timeout=60), lines
    assert threading.active_count() == before  # the helper thread was joined
    assert lines[0] == "calibration: 12 s so far, about 18 s left"
    assert lines[1] == "calibration: 24 s so far, about 6 s left"
    assert lines[-1].startswith("calibration: done in ") and lines[-1].endswith("(estimated 30 s)")


def test_heartbeat_thread_is_joined_when_the_call_fails():
    lines: list[str] = []
    before = threading.active_count()
    with progress.reporting(lines.append), pytest.raises(RuntimeError):
        with progress.heartbeat("export", None, clock=FakeClock(0.0), poll_s=0.001):
            raise RuntimeError("boom")
    assert threading.active_count() == before
    assert lines == []  # never long (the clock stood still): nothing shown, no closing line


def test_reporting_is_restored_after_the_block():
    with progress.reporting(lambda line: None):
        pass
    assert progress._reporter.get() is None


def test_progress_lines_survive_the_exporters_stderr_redirect(capsys):
    import contextlib
    import io

    from trt_converters.stages.context import progress_lines

    hidden = io.StringIO()
    with progress_lines("export"), contextlib.redirect_stderr(hidden):  # as export.py does, for every thread
        log, running = progress._reporter.get()
        running("legacy export: 12 s so far, about 2 s left")
    assert capsys.readouterr().err == "[export] legacy export: 12 s so far, about 2 s left\n"
    assert hidden.getvalue() == ""


def test_on_a_terminal_running_lines_replace_each_other_and_the_last_stays(monkeypatch):
    import io

    from trt_converters.stages import context

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(context.sys, "stderr", terminal)
    with context.progress_lines("lower"):
        log, running = progress._reporter.get()
        running("AutoCast: 10 s so far, about 20 s left")
        running("AutoCast: 20 s so far, about 10 s left")
        context.log("warning: something worth a line")
        running("AutoCast: 30 s so far, about 1 s left")
        log("AutoCast: done in 31 s (estimated 30 s)")
    shown = terminal.getvalue()
    clear = context.CLEAR_LINE
    assert shown == (f"{clear}[lower] AutoCast: 10 s so far, about 20 s left{clear}[lower] AutoCast: 20 s so far, "
                     f"about 10 s left{clear}warning: something worth a line\n{clear}[lower] AutoCast: 30 s so far, "
                     f"about 1 s left{clear}[lower] AutoCast: done in 31 s (estimated 30 s)\n")
    assert shown.rsplit(clear, 1)[-1] == "[lower] AutoCast: done in 31 s (estimated 30 s)\n"


def test_cost_models_reproduce_the_roberta_base_runs_they_were_fitted_on():
    # RoBERTa-base on the 2-vCPU machine: AutoCast 21.8 s, 64-sample INT8 quantization 98.4 s, legacy export 13.8 s,
    # dynamo export 17.9 s
    assert progress.autocast_seconds(867, 498.6) == pytest.approx(21.8, rel=0.1)
    assert progress.calibration_seconds(498.6, 64) == pytest.approx(98.4, rel=0.1)
    assert progress.calibration_seconds(498.6, 16, fp16=True) == pytest.approx(84.1, rel=0.1)
    assert progress.export_seconds(498.6, 201) == pytest.approx(13.8, rel=0.15)
    assert progress.export_seconds(498.6, 201, "dynamo") == pytest.approx(17.9, rel=0.1)


def test_graph_megabytes_counts_external_data(tmp_path):
    graph = tmp_path / "model.onnx"
    graph.write_bytes(b"x" * 1000)
    assert progress.graph_megabytes(graph) == 0.001
    (tmp_path / "model.onnx.data").write_bytes(b"x" * 2_000_000)
    assert progress.graph_megabytes(graph) == pytest.approx(2.001)
