"""`python -m suite list|show|run`: output, and one clear line for every kind of bad input."""

from __future__ import annotations

import json

import pytest

from recipes import registry
from tests.helpers import TINY_DC, assert_one_line_error, run_cli, sets


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
    proc = run_cli("show", "wgan_lsun", "--set", "lr_d=1e-4", "--seed", "7")
    assert proc.returncode == 0, proc.stderr
    resolved = json.loads(proc.stdout)
    assert resolved["recipe"] == "wgan_lsun" and resolved["family"] == "wgan"
    cfg = resolved["config"]
    assert cfg["lr_d"] == 1e-4 and cfg["lr_g"] == 5e-5 and cfg["seed"] == 7 and cfg["clip_value"] == 0.01
    assert cfg["n_extra_layers"] == 1 and cfg["dataset"] == "lsun_bedroom"


@pytest.mark.parametrize("args,needles", [
    (["run", "no_such_recipe"], ["unknown recipe 'no_such_recipe'"]),
    (["run", "wgan_lsn"], ["did you mean wgan_lsun"]),
    (["show", "dcgan_fashion", "--set", "lr=1e-3"], ["unknown config key 'lr'", "lr_g"]),
    (["show", "dcgan_fashion", "--set", "lr_g"], ["--set expects key=value"]),
    (["show", "dcgan_fashion", "--set", "lr_g=-1e-4"], ["invalid lr_g"]),
    (["show", "dcgan_fashion", "--set", "lr_d=0"], ["invalid lr_d"]),
    (["show", "dcgan_fashion", "--set", "lr_d=nan"], ["invalid lr_d"]),
    (["show", "wgan_fashion", "--set", "n_critic=0"], ["invalid n_critic=0"]),
    (["show", "wgan_fashion", "--set", "clip_value=-0.01"], ["invalid clip_value"]),
    (["show", "wgan_fashion", "--set", "n_critic=five"], ["expected int"]),
    (["show", "dcgan_fashion", "--set", "image_size=48"], ["power of two"]),
    (["show", "dcgan_fashion", "--set", "batch_size=0"], ["invalid batch_size=0"]),
    (["run", "dcgan_fashion", "--device", "cuda:0"], []),
    (["run", "dcgan_fashion", "--device", "tpu"], ["--device"]),
    (["run"], ["RECIPE"]),
    (["run", "dcgan_fashion", "--max-steps", "ten"], ["invalid int value"]),
    (["frobnicate"], ["invalid choice"]),
    (["run", "dcgan_fashion", "--set", "dataset=imagenet"], ["unknown dataset 'imagenet'"]),
    (["run", "dcgan_digits", "--set", "dataset=ring8"], ["2D points"]),
])
def test_bad_input_gets_one_clear_line_and_a_nonzero_exit(suite_home, args, needles):
    import torch

    if args[-1] == "cuda:0" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA, so --device cuda is valid input here")
    proc = run_cli(*args, env={"SUITE_HOME": str(suite_home)})
    assert_one_line_error(proc, *needles)


def test_a_corrupt_checkpoint_on_resume_is_one_line_and_leaves_the_run_alone(suite_home, mlflow_client):
    env = {"SUITE_HOME": str(suite_home)}
    proc = run_cli("run", "dcgan_digits", "--max-steps", "3", *sets(TINY_DC), env=env)
    run_id = proc.stdout.split()[-1]
    from suite import paths

    last = paths.run_dir(run_id) / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # truncated
    before = mlflow_client.get_run(run_id)
    proc = run_cli("run", "--resume", run_id, "--max-steps", "6", env=env)
    assert_one_line_error(proc, "corrupt or truncated")
    after = mlflow_client.get_run(run_id)
    assert after.info.status == before.info.status == "FINISHED"
    assert after.data.metrics == before.data.metrics
