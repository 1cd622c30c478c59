"""The box's own speed that every benchmark records (benchmarks/box_speed.py)."""

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import box_speed as speed_module  # noqa: E402


def test_best_of_skips_the_warm_up_and_keeps_the_fastest_run(monkeypatch):
    durations = iter([0.125, 4.0, 1.5, 2.0])  # the warm-up (0.125 s, the fastest) is not one of the timed runs
    clock = {"now": 0.0}
    calls = []

    def work():
        calls.append(1)
        clock["now"] += next(durations)
        return len(calls)

    monkeypatch.setattr(speed_module.time, "perf_counter", lambda: clock["now"])
    assert speed_module.best_of(work, repeats=3) == (1.5, 4)  # and the last run's output
    assert len(calls) == 4


def test_box_speed_reports_its_three_figures_as_positive_numbers():
    speed = speed_module.box_speed(repeats=1)
    assert set(speed) == {"gemm_gflops", "thin_ms", "loss_pass_ms"}
    assert all(math.isfinite(v) and v > 0 for v in speed.values())


def test_best_of_times_between_the_syncs(monkeypatch):
    """A GPU's work is timed to its end: ``sync`` runs before and after each timed run, inside the clock's window."""
    clock = {"now": 0.0}
    events = []

    def work():
        events.append("work")
        clock["now"] += 1.0
        return None

    def sync():
        events.append("sync")
        clock["now"] += 0.25  # waiting for the device: counted after a run, not before it

    monkeypatch.setattr(speed_module.time, "perf_counter", lambda: clock["now"])
    assert speed_module.best_of(work, repeats=2, sync=sync)[0] == 1.25
    assert events == ["work"] + ["sync", "work", "sync"] * 2
