"""A benchmark's statistics from its cells' values: the leaderboard (Student-t intervals over
seeds) and the paired comparisons (Holm over the pairs, verdicts or why there is none).

    python -m suite benchmark gan_fashion dcgan_fashion --seeds 8

`results` is spec -> seed -> cell values ({"primary", "best", "last", "noise", "curves"}), as
suite.benchmark collects them from the cells' runs; nothing here trains or reads a store.
"""

from __future__ import annotations

import math

from evaluation import metrics, seeds, sequential
from evaluation.sequential import FIXED
from suite.core.errors import ConfigError


def resolve_metric(name: str, available: set[str]) -> str | None:
    """A logged name, or a table key ('kid') -> the one logged name of that metric."""
    if name in available:
        return name
    hits = sorted(k for k in available if (m := metrics.lookup(k)) and m.key == name)
    if len(hits) > 1:
        raise ConfigError(f"--metric '{name}' is ambiguous here: {', '.join(hits)}")
    return hits[0] if hits else None


def leaderboard(specs: list[str], ds: dict[str, str], results: dict) -> dict:
    """Per spec and evaluation metric, at the best checkpoint and the last step: the Student-t
    interval over seeds and which noise dominates; rows ordered by each dataset's primary metric."""
    rows, primaries = [], {}
    for label in specs:
        runs = results.get(label, {})
        if not runs:
            continue
        names = sorted(set.intersection(*(set(r["last"]) for r in runs.values())))
        primaries[label] = next(iter(runs.values()))["primary"]
        for name in names:
            for at in ("best", "last"):
                if not all(name in r[at] for r in runs.values()):
                    continue
                values = [runs[s][at][name] for s in sorted(runs)]
                ci = seeds.t_interval(values)
                noise = [runs[s]["noise"][name] for s in sorted(runs) if name in runs[s]["noise"]]
                row = {"spec": label, "dataset": ds[label], "metric": name, "at": at, **ci, "values": values,
                       "seeds": sorted(runs)}
                if noise and ci["std"] is not None and (ci["std"] > 0 or max(noise) > 0):
                    row["sample_noise"] = float(sum(noise) / len(noise)) / 1.96  # sd implied by the run's interval
                    row["dominant"] = "seeds" if ci["std"] > row["sample_noise"] else "samples"
                rows.append(row)

    rank = {}  # spec -> its primary mean, signed so that smaller is better (no mean: last)
    for r in seeds.preferred(rows):
        if r["metric"] == primaries.get(r["spec"]) and r["mean"] is not None and math.isfinite(r["mean"]):
            rank[r["spec"]] = -r["mean"] if metrics.direction(r["metric"]) == "max" else r["mean"]

    def order(row):
        return (row["dataset"], rank.get(row["spec"], math.inf), row["spec"], row["metric"], row["at"])

    rows.sort(key=order)
    return {"rows": rows, "primaries": primaries}


def margin_for(name: str, primary: str | None, margins: dict[str, float]) -> float | None:
    """The equivalence margin of a logged metric: given by its name or key, or '' for the primary."""
    m = metrics.lookup(name)
    for key in (name, m.key if m else None, "" if name == primary else None):
        if key is not None and key in margins:
            return margins[key]
    return None


def comparisons(pairs: list[tuple[str, str]], results: dict, primaries: dict, extra: list[str], test: str,
                design: sequential.Design | None = None, margins: dict[str, float] | None = None,
                n_now: int | None = None) -> list[dict]:
    """Each pair paired by seed on its primary metric and on each `extra` one: the difference, its
    interval, Holm over the pairs per metric, and a verdict (or why there is none). `design`: the
    fixed seeds (default) or the sequential rounds (evaluation/sequential.py), judged up to n_now."""
    margins = margins or {}
    todo = []
    for a, c in pairs:
        if a not in results or c not in results:
            continue
        common = sorted(set(results[a]) & set(results[c]))
        both = [results[x][s] for x in (a, c) for s in common]
        available = set.intersection(*(set(r["last"]) for r in both)) if both else set()
        for m in [primaries.get(a)] + list(extra):
            name = resolve_metric(m, available) if m else None
            if name is None:
                lacking = sorted(f"{x} seed {s}" for x in (a, c) for s in common if m not in results[x][s]["last"])
                raise ConfigError(f"metric '{m}' is missing from cells {', '.join(lacking[:4]) or '(none finished)'}; "
                                  f"available: {', '.join(sorted(available)[:8])}")
            at = "best" if all(name in r["best"] for r in both) else "last"  # final-only metrics: the last step
            diffs = [results[a][s][at][name] - results[c][s][at][name] for s in common]
            todo.append({"a": a, "b": c, "metric": name, "at": at, "pair": (a, c), "family": name, "diffs": diffs,
                         "margin": margin_for(name, primaries.get(a), margins),
                         "smaller_better": metrics.direction(name) == "min"})
    design = design or sequential.Design(max_seeds=max((len(t["diffs"]) for t in todo), default=0))
    judged = sequential.verdicts(todo, design, test, n_now)
    return [_comparison(t, v, design, test) for t, v in zip(todo, judged)]


def _comparison(t: dict, v: dict, design: sequential.Design, test: str) -> dict:
    """One row of `comparisons`: the verdict, or why the seeds cannot give one."""
    m = v["pairs"]
    row = {"a": t["a"], "b": t["b"], "metric": t["metric"], "at": t["at"], **v, "test": design.method(test),
           "design": "sequential" if design.sequential else FIXED}
    need = seeds.seeds_needed(m, test)
    if v["n"] < need:
        row.update(verdict="too few seeds", min_detectable=None, decided_at=None,
                   note=f"{v['n']} paired seeds; the {seeds.TESTS[test]} over {m} pair{'s' * (m > 1)} needs {need}")
        return row
    # at Holm's strictest step, alpha / m, at the last look's level: a difference this large is found whatever
    # the other pairs show (for the sequential design a bound: the earlier looks only add power)
    level = seeds.ALPHA / m
    if design.sequential:
        cal = sequential.calibration(design.min_seeds, design.batch)
        level = cal.boundary(seeds.ALPHA / m) * cal.weight(v["look"] or 0)
    row["min_detectable"] = seeds.min_detectable(v["n"], v["sd_diff"], level, test)
    return row
