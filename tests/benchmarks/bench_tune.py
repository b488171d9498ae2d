"""Study throughput: trials per hour with 2 workers vs 1 worker, measured in the same run.

    tox -e bench -- -k tune
"""

from __future__ import annotations

import itertools

from tests.benchmarks.conftest import EXTRA, check, goal, record
from tests.helpers import run_cli, sets

# No goal: on a 2-core machine one worker already keeps both cores busy (torch intra-op threads),
# so the ratio measures the cost of process-level parallelism; it pays off with more cores or GPUs.
goal("tune_workers", "min", None, "gan_ring8 study, 6 trials: throughput 2 workers / 1 worker")
TRIALS = 6
_names = itertools.count()


def study(tmp_path, workers):
    name = f"bench{next(_names)}"
    over = {"g_hidden": "64,64", "d_hidden": "64", "eval_n": 2000, "n_sample": 200}
    proc = run_cli("tune", "gan_ring8", "--trials", str(TRIALS), "--workers", str(workers), "--pruner", "none",
                   "--storage", f"sqlite:///{tmp_path / 'bench.db'}", "--study-name", name, "--max-steps", "300",
                   *sets(over), env={"SUITE_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_tune_one_worker(benchmark, tmp_path):
    benchmark.pedantic(study, args=(tmp_path, 1), rounds=1, iterations=1)
    record("tune_workers", "baseline", benchmark)


def test_tune_two_workers(benchmark, tmp_path):
    benchmark.pedantic(study, args=(tmp_path, 2), rounds=1, iterations=1)
    record("tune_workers", "ours", benchmark)
    value = check("tune_workers")
    EXTRA["tune_workers"] = f"{3600 * TRIALS / benchmark.stats.stats.median:.0f} trials/h with 2 workers"
    assert value > 0
