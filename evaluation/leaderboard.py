"""A benchmark's statistics from its cells' values: the leaderboard (Student-t intervals over
seeds) and the paired comparisons (Holm over the pairs, verdicts or why there is none).

    python -m suite benchmark gan_fashion dcgan_fashion --seeds 8

`results` is spec -> seed -> cell values ({"primary", "best", "last", "noise", "curves"}), as
suite.benchmark collects them from the cells' runs; nothing here trains or reads a store.
"""

from __future__ import annotations

import math

from evaluation import metrics, seeds
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


def comparisons(pairs: list[tuple[str, str]], results: dict, primaries: dict, extra: list[str], test: str) -> list[dict]:
    """Each pair paired by seed on its primary metric and on each `extra` one: the difference, its
    interval, Holm over the pairs per metric, and a verdict (or why there is none)."""
    out = []
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
            todo.append((a, c, name, at, [results[a][s][at][name] for s in common],
                         [results[c][s][at][name] for s in common]))
    tests = [seeds.paired(x, y, test) for *_, x, y in todo]  # the interval is Student-t for either test
    families = {name: [i for i, t in enumerate(todo) if t[2] == name] for name in {t[2] for t in todo}}
    adjusted, size = [1.0] * len(todo), [1] * len(todo)
    for idx in families.values():  # Holm over the pairs, one family per metric (a metric names its dataset)
        ps = [tests[i]["p_value"] if tests[i]["p_value"] is not None else 1.0 for i in idx]
        for i, p in zip(idx, seeds.holm(ps)):
            adjusted[i], size[i] = p, len(idx)
    for (a, c, name, at, *_), t, p, m in zip(todo, tests, adjusted, size):
        need = seeds.seeds_needed(m, test)
        row = {"a": a, "b": c, "metric": name, "at": at, "n": t["n"], "diff": t["diff"], "ci_low": t["ci_low"],
               "ci_high": t["ci_high"], "p_value": t["p_value"], "p_holm": p, "pairs": m, "test": seeds.TESTS[test]}
        if t["n"] < need:
            row.update(verdict="too few seeds", min_detectable=None,
                       note=f"{t['n']} paired seeds; the {seeds.TESTS[test]} over {m} pair{'s' * (m > 1)} needs {need}")
            out.append(row)
            continue
        if p < seeds.ALPHA:
            better = (t["diff"] < 0) == (metrics.direction(name) == "min")
            row["verdict"] = "a better" if better else "b better"
        else:
            row["verdict"] = "no detectable difference"
        # at Holm's strictest step, alpha / m: a difference this large is found whatever the other pairs show
        row["min_detectable"] = seeds.min_detectable(t["n"], t["sd_diff"], seeds.ALPHA / m, test)
        out.append(row)
    return out
