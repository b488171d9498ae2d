"""`python -m suite list|show|run`: output, and one clear line for every kind of bad input."""

from __future__ import annotations

import json


from recipes import registry
from tests.helpers import run_cli, run_main


def test_list_shows_every_recipe_with_family_dataset_and_size():
    proc = run_cli("list")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["recipe", "family", "dataset", "size"]
    for name, r in registry.RECIPES.items():
        row = next(line for line in lines if line.split()[0] == name)
        assert r.family in row and r.dataset in row and r.summary in row
    assert "64px" in next(line for line in lines if line.startswith("wgan_lsun"))
    assert "2D" in next(line for line in lines if line.startswith("gan_ring8"))


def test_show_prints_the_resolved_config_as_json():
    proc = run_main("show", "wgan_lsun", "--set", "lr_d=1e-4", "--seed", "7")
    assert proc.returncode == 0, proc.stderr
    resolved = json.loads(proc.stdout)
    assert resolved["recipe"] == "wgan_lsun" and resolved["family"] == "wgan"
    cfg = resolved["config"]
    assert cfg["lr_d"] == 1e-4 and cfg["lr_g"] == 5e-5 and cfg["seed"] == 7 and cfg["clip_value"] == 0.01
    assert cfg["n_extra_layers"] == 1 and cfg["dataset"] == "lsun_bedroom"
