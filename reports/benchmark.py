"""A benchmark's report: what the seeds can decide, the leaderboard, a forest plot and bands over
training per dataset, the comparisons in words, and the median seed's samples of each spec.

    python -m suite report --benchmark NAME -o bench.html
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from evaluation import metrics, seeds
from reports import figures
from reports.document import Document, Section, Table, Text
from reports.sources import artifact_png, json_artifact, png
from suite.core import tracking
from suite.core.errors import ConfigError


def as_text(out: dict) -> str:
    """The leaderboard of each dataset's primary metric and the comparisons, as the command prints them."""
    lines = [f"benchmark {out['benchmark']} ({out['interval']}; {out['test']}, Holm)"]
    wanted = {c["metric"] for c in out["comparisons"]} | set(out["primaries"].values())
    shown = [r for r in seeds.preferred(out["rows"]) if r["metric"] in wanted]
    if shown:
        width = max(len(r["spec"]) for r in shown)
        mw = max(len(r["metric"]) for r in shown)
        lines.append(f"{'spec'.ljust(width)}  {'metric'.ljust(mw)}  at    {'n':>2}  {'mean':>9}  {'95% CI':>21}  "
                     f"{'std':>8}  dominant  per seed")
        for r in shown:
            ci = f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]" if r["ci_low"] is not None else "-"
            lines.append(f"{r['spec'].ljust(width)}  {r['metric'].ljust(mw)}  {r['at']:<4}  {r['n']:>2}  "
                         f"{r['mean']:>9.4g}  {ci:>21}  {(r['std'] or 0):>8.3g}  {r.get('dominant', '-'):<8}  "
                         + " ".join(f"{v:.4g}" for v in r["values"]))
    for c in out["comparisons"]:
        lines.append("  " + seeds.in_words(c))
    if out["missing"]:
        lines.append(f"missing cells: {', '.join(out['missing'])}")
    lines.append(out["power"])
    for i, r in enumerate(out.get("rounds", []), 1):
        lines.append(f"  round {i}: {r['seeds']} seeds for {len(r['trained'])} spec{'s' * (len(r['trained']) > 1)}; "
                     + ("decided: " + "; ".join(r["decided"]) if r["decided"] else "nothing decided"))
    if "cost" in out:  # benchmarks finished before costs were recorded have none
        lines.append(cost_line(out["cost"]))
    if name := out.get("benchmark"):
        lines.append(f"next: python -m suite report --benchmark {name}   (forest plot, comparisons, samples)  |  "
                     "python -m suite ui")
    return "\n".join(lines)


def cost_line(c: dict) -> str:
    """What the benchmark cost in device-hours, and what the fixed design would have."""
    line = f"cost: {c['device_hours']:.3g} device-hours over {c['cells']} cells"
    if fixed := c.get("fixed_design"):
        saved = 1 - c["device_hours"] / fixed["device_hours"] if fixed["device_hours"] else 0.0
        line += (f"; the fixed design with {fixed['seeds']} seeds would have cost {fixed['device_hours']:.3g} over "
                 f"{fixed['cells']} cells ({saved:.0%} saved)")
    return line


def benchmark_parent(name: str):
    found = tracking.find_runs(f"tags.`suite.benchmark` = '{name}' and tags.`suite.kind` = 'benchmark'")
    if not found:
        raise ConfigError(f"no benchmark named '{name}' in {tracking.paths.shown_uri()}")
    return found[0]


def _fmt(v) -> str:
    return "" if v is None else f"{v:.4g}"


def report_benchmark(name: str) -> tuple[Document, str]:
    parent = benchmark_parent(name)
    pid = parent.info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        board = json_artifact(pid, "benchmark/leaderboard.json", tmp)
        cells = json_artifact(pid, "benchmark/cells.json", tmp) or {}
        if board is None:
            raise ConfigError(f"benchmark '{name}' has no leaderboard yet (its cells are still running or it "
                              "was stopped); rerun the same `suite benchmark` command to finish it")
        doc = Document(f"Benchmark {name}", f"{board['interval']} · {board['test']}, Holm-corrected · tracking "
                                            f"store: {tracking.paths.shown_uri()}")
        top = doc.add(Section("What these seeds can decide"))
        top.add(Text(board["power"]))
        if board.get("missing"):
            top.add(Text(f"Missing cells (failed or not yet trained): {', '.join(board['missing'])}", "verdict-bad"))
        primaries = board.get("primaries", {})
        for dataset in sorted({r["dataset"] for r in board["rows"]}):
            _dataset_sections(doc, dataset, [r for r in board["rows"] if r["dataset"] == dataset], primaries, cells)
        if board["comparisons"]:
            _comparisons(doc, board)
        if board.get("rounds"):
            _rounds(doc, board["rounds"])
        if board.get("cost"):
            _cost(doc, board["cost"])
        if board.get("budget"):
            _budget(doc, board, primaries)
        grids = doc.add(Section("Samples of each spec's median seed"))
        for spec, runs in cells.items():
            primary = primaries.get(spec)
            at = lambda r: r["best"] if primary in r["best"] else r["last"]  # noqa: E731 - measured once: the end
            ranked = sorted((at(r).get(primary, np.nan), int(seed), r["run_id"]) for seed, r in runs.items()
                            if primary in at(r))
            if not ranked:
                continue
            value, seed, run_id = ranked[(len(ranked) - 1) // 2]
            last = sorted(p for p in tracking.list_artifacts(run_id, "samples") if p.endswith(".png"))
            if last:
                img = artifact_png(run_id, last[-1], tmp, f"{spec}, seed {seed} (median of {len(ranked)} seeds: "
                                                          f"{primary} = {value:.4g}), fixed noise, last step")
                if img:
                    grids.add(img)
    return doc, pid


def _comparisons(doc: Document, board: dict) -> None:
    comp = doc.add(Section("Paired comparisons"))
    for c in board["comparisons"]:
        good = c["verdict"] in ("a better", "b better") or c["verdict"].startswith("equivalent")
        comp.add(Text(seeds.in_words(c), "verdict-ok" if good else "note"))
    sequential = board.get("design", {}).get("kind") == "sequential"
    interval = "repeated 95 % CI" if sequential else "95 % CI"
    comp.add(Table(["a", "b", "metric", "n", "difference a - b", interval, "p", "p (Holm)", "verdict", "decided at",
                    "min. detectable"],
                   [[c["a"], c["b"], c["metric"], c["n"], _fmt(c["diff"]), f"[{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]",
                     _fmt(c["p_value"]), _fmt(c["p_holm"]), c["verdict"],
                     f"{c['decided_at']} seeds" if c.get("decided_at") else "", _fmt(c.get("min_detectable"))]
                    for c in board["comparisons"]],
                   caption=f"paired by seed; {board['test']}"
                           + ("; p: the look's own t-test, p (Holm): the sequential p-value, Holm over the pairs; "
                              "the repeated interval holds at every look at once" if sequential else "")
                           + "; min. detectable: the difference this test finds with 80 % power at the observed "
                             "spread"))


def _rounds(doc: Document, rounds: list[dict]) -> None:
    sec = doc.add(Section("Rounds"))
    sec.add(Table(["round", "seeds", "specs trained", "decided at this look", "still open"],
                  [[i, r["seeds"], ", ".join(r["trained"]), "; ".join(r["decided"]) or "-", ", ".join(r["open"]) or "-"]
                   for i, r in enumerate(rounds, 1)],
                  caption="each round trains the next seeds of the specs still in an open pair, then tests every "
                          "open pair (the design is stated under 'What these seeds can decide')"))


def _cost(doc: Document, c: dict) -> None:
    sec = doc.add(Section("Cost"))
    sec.add(Text(cost_line(c)))
    sec.add(Table(["spec", "cells", "seeds", "device-hours", "hours per cell", "device", "steps"],
                  [[spec, v["cells"], v["seeds"], _fmt(v["device_hours"]), _fmt(v["hours_per_cell"]), v["device"],
                    v["steps"]] for spec, v in c["specs"].items()],
                  caption="wall time of every trained cell (setup and evaluation included; failed cells too: they "
                          "were paid for)"))


def _budget(doc: Document, board: dict, primaries: dict) -> None:
    budget = doc.add(Section("Budget curves"))
    for dataset in sorted({r["dataset"] for r in board["rows"]}):
        specs = {r["spec"] for r in board["rows"] if r["dataset"] == dataset}
        curves = {spec: c for spec, c in board["budget"].items() if spec in specs and c}
        if not curves:
            continue
        metric = primaries[next(iter(curves))]
        budget.add(png(figures.budget(curves, f"expected best {metric} vs trials", metrics.unit(metric)),
                       "expected best of k random-search trials per spec, with the 95 % band of the best "
                       "of k (Lucic et al. 2018): compare the families at the same k"))
        if all(p.get("device_hours") is not None for c in curves.values() for p in c):
            budget.add(png(figures.budget(curves, f"expected best {metric} vs device-hours", metrics.unit(metric),
                                          against="device_hours"),
                           "the same curves against the device-hours k trials cost: families compared at equal "
                           "computational budget"))


def _dataset_sections(doc: Document, dataset: str, rows: list[dict], primaries: dict, cells: dict) -> None:
    sec = doc.add(Section(f"Leaderboard: {dataset}"))
    primary = next((primaries[r["spec"]] for r in rows if primaries.get(r["spec"])), None)
    best_rows = [r for r in seeds.preferred(rows) if r["metric"] == primary]  # best checkpoint, else last
    if best_rows:
        at = "the best checkpoint" if best_rows[0]["at"] == "best" else "the last step"
        sec.add(png(figures.forest(best_rows, f"{primary} at {at}", metrics.unit(primary)),
                            f"forest plot: mean, {seeds.INTERVAL} and every seed's value"))
    noisy = [r for r in best_rows if r.get("dominant")]
    if noisy:
        sec.add(Text("; ".join(f"{r['spec']}: seed-to-seed sd {r['std']:.3g} vs sample noise sd "
                               f"{r['sample_noise']:.3g} ({r['dominant']} dominate)" for r in noisy)))
    columns = ["spec", "metric", "at", "n", "mean", "std", "95 % CI", "sample noise sd", "dominant", "per seed"]
    headline = [r for r in rows if r["metric"] == primary]
    sec.add(Table(columns, _rows(headline), caption=f"{primary}: at the best checkpoint and at the last step"))
    sec.add(Table(columns, _rows([r for r in seeds.preferred(rows) if r["metric"] != primary]), sortable=True,
                  caption="every other evaluation metric at the best checkpoint, or at the last step where it is "
                          "measured only at the end (the parent run's JSON and CSV artifacts hold both); sample "
                          "noise: the sd implied by each run's bootstrap interval at its last evaluation, averaged "
                          "over seeds"))
    if primary:
        curves = {}
        for r in best_rows:
            per_seed = [dict(c["curves"][primary]) for c in cells.get(r["spec"], {}).values()
                        if primary in c.get("curves", {})]
            steps = sorted(set.intersection(*(set(p) for p in per_seed))) if per_seed else []
            curves[r["spec"]] = [(s, *_mean_ci([p[s] for p in per_seed])) for s in steps]
        if any(len(c) > 1 for c in curves.values()):
            sec.add(png(figures.bands(curves, f"{primary} over training", metrics.unit(primary)),
                        f"{primary} over training: mean over seeds at each evaluation step; band: {seeds.INTERVAL}"))


def _rows(rows: list[dict]) -> list[list]:
    return [[r["spec"], r["metric"], r["at"], r["n"], _fmt(r["mean"]), _fmt(r["std"]),
             f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]", _fmt(r.get("sample_noise")), r.get("dominant", ""),
             " ".join(f"{v:.4g}" for v in r["values"])] for r in rows]


def _mean_ci(values: list[float]) -> tuple:
    ci = seeds.t_interval(values)
    return ci["mean"], ci["ci_low"], ci["ci_high"]
