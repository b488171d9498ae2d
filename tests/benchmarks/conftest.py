"""Benchmarks measure ratios against a baseline timed in the same run, never absolute seconds.

Each comparison is a pair of pytest-benchmark tests (`ours` and `baseline`) sharing a name;
their medians are collected here, and the session ends with one table of ratios, also written
to .benchmarks/ratios.json so two commits can be compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS: dict[str, dict[str, float]] = {}
GOALS: dict[str, tuple[str, float, str]] = {}  # name -> (kind, bound, description)
EXTRA: dict[str, str] = {}


def record(name: str, role: str, benchmark, stat: str = "min") -> None:
    """The fastest round of each side (the least disturbed by whatever else the machine runs);
    `mean` for throughput through a prefetching queue, where the fastest round is a cache hit."""
    RESULTS.setdefault(name, {})[role] = getattr(benchmark.stats.stats, stat)


def goal(name: str, kind: str, bound: float | None, description: str) -> None:
    """kind 'max': ours/baseline <= bound; 'min': baseline/ours >= bound (a speed-up);
    bound None: a ratio measured and reported, with no goal set for it."""
    GOALS[name] = (kind, bound, description)


def ratio(name: str) -> float | None:
    r = RESULTS.get(name, {})
    if "ours" not in r or "baseline" not in r:
        return None
    kind = GOALS.get(name, ("max",))[0]
    return r["baseline"] / r["ours"] if kind == "min" else r["ours"] / r["baseline"]


def check(name: str) -> float:
    """Assert the goal of a finished pair; returns the ratio."""
    value = ratio(name)
    if value is None:  # the other half was deselected (-k) or failed, and then its own test says so
        pytest.skip(f"{name}: no ratio, its other half did not run in this selection")
    kind, bound, _ = GOALS[name]
    if bound is None:
        return value
    if kind == "min":
        assert value >= bound, f"{name}: speed-up {value:.2f}x, goal >= {bound}x"
    else:
        assert value <= bound, f"{name}: ratio {value:.3f}, goal <= {bound}"
    return value


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own table: the ratios are the answer
def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    rows = []
    for name in RESULTS:
        value = ratio(name)
        kind, bound, desc = GOALS.get(name, ("max", float("nan"), name))
        if value is None:
            continue
        met = None if bound is None else (value >= bound if kind == "min" else value <= bound)
        rows.append({"name": name, "what": desc, "ratio": round(value, 4),
                     "goal": "none" if bound is None else f"{'>=' if kind == 'min' else '<='} {bound}", "met": met,
                     "ours_s": RESULTS[name]["ours"], "baseline_s": RESULTS[name]["baseline"],
                     "note": EXTRA.get(name, "")})
    tr = terminalreporter
    tr.section("benchmark ratios (same run)")
    if not rows:
        tr.write_line("no complete pair ran (select both sides of a comparison with -k)")
        return
    width = max(len(r["what"]) for r in rows)
    for r in rows:
        verdict = "reported" if r["met"] is None else ("met" if r["met"] else "MISSED")
        tr.write_line(f"{r['what'].ljust(width)}  {r['ratio']:>9.3f}  goal {r['goal']:<7}  {verdict}  {r['note']}")
    out = Path(".benchmarks")
    out.mkdir(exist_ok=True)
    (out / "ratios.json").write_text(json.dumps(rows, indent=2))
