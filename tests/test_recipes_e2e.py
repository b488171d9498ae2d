"""Every CPU-sized recipe that `suite list` shows trains, evaluates and finishes: a short run
through the CLI, then the run is FINISHED with its primary metric and `generator.pt`. The list
comes from the registry, so a recipe added later is tested without anyone adding it here."""

from __future__ import annotations

import pytest

from evaluation import metrics
from recipes import registry
from tests.helpers import run_main, sets

CPU_RECIPES = [name for name, r in registry.RECIPES.items() if r.cpu_sized]
DEFAULT_TIER = {"gan_ring8", "dcgan_digits"}  # the rest train or evaluate for tens of seconds: slow tier
STEPS = {"wgan_fashion": 2, "wgan_digits": 2}  # each early WGAN iteration is a 100-step critic burst


def test_the_list_is_what_suite_list_shows():
    shown = run_main("list").stdout.splitlines()[1:]
    assert sorted(line.split()[0] for line in shown if line.split()[4] == "cpu") == sorted(CPU_RECIPES)


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in DEFAULT_TIER else pytest.mark.slow)
                                  for n in CPU_RECIPES])
def test_every_cpu_recipe_finishes_with_its_final_evaluation(name, suite_home, mlflow_client):
    proc = run_main("run", name, "--max-steps", str(STEPS.get(name, 20)), *sets({"eval_n": 1000}),
                    env={"SUITE_HOME": str(suite_home)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = mlflow_client.get_run(proc.stdout.split()[-1])
    assert run.info.status == "FINISHED"
    primary = run.data.tags["suite.best_metric"]
    assert metrics.lookup(primary) is not None and primary in run.data.metrics
    files = {f.path for f in mlflow_client.list_artifacts(run.info.run_id, "checkpoints")}
    assert "checkpoints/generator.pt" in files and "checkpoints/best.pt" in files
