"""Bring your own GAN: plugin families, recipes, extractors and metrics through the registration
door the built-ins use; the two example papers; evaluating any set against any other.

    python -m pytest tests/test_plugins.py
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation import metrics as metric_table
from recipes import registry
from suite import data, plugins
from tests.helpers import ROOT, TINY_DC, assert_one_line_error, run_main, sets

EXAMPLES = ROOT / "examples" / "plugins"


def docs_plugin() -> str:
    """The minimal plugin printed in docs/plugins.md, as a reader would copy it."""
    text = (ROOT / "docs" / "plugins.md").read_text()
    block = re.search(r"## A minimal plugin.*?```python\n(.*?)```", text, re.S).group(1)
    assert len(block.splitlines()) < 80
    return block


GOOD_FAMILY = '''
from dataclasses import dataclass
from recipes import BaseConfig, Trainer, register_family
{config}
class T(Trainer):
{trainer}
register_family({name!r}, Config, T)
'''
TRAINER_OK = "    def train_step(self, next_batch):\n        return {}\n    def noise(self, n, generator=None):\n        return None"


def family_source(config="@dataclass\nclass Config(BaseConfig):\n    lr_g: float = 1e-4", trainer=TRAINER_OK,
                  name="mine") -> str:
    return GOOD_FAMILY.format(config=config, trainer=trainer, name=name)


BAD_PLUGINS = [
    (family_source(config="class Config(BaseConfig):\n    lr_g: float = 1e-4"), "must be a @dataclass subclass"),
    (family_source(config="@dataclass\nclass Config(BaseConfig):\n    lr = 1e-4"), "Config.lr has no type annotation"),
    (family_source(config="@dataclass\nclass Config:\n    lr: float = 1e-4"), "subclass of recipes.BaseConfig"),
    (family_source(config="from dataclasses import field\n@dataclass\nclass Config(BaseConfig):\n"
                          "    widths: list = field(default_factory=list)"), "Config.widths is typed"),
    (family_source(trainer="    pass"), "does not implement train_step"),
    (family_source(trainer="    def train_step(self, next_batch):\n        return {}"), "does not implement noise"),
    (family_source(trainer=TRAINER_OK + "\n    kind = 'video'"), "kind must be one of"),
    (family_source(name="wgan"), "family 'wgan' is already registered by a built-in"),
    (family_source(name="My-GAN"), "must be lower-case letters"),
    (family_source() + "from recipes import register_recipe\nregister_recipe('dcgan_digits', 'mine', 'digits', 'x')\n",
     "recipe 'dcgan_digits' is already registered"),
    (family_source() + "from recipes import register_recipe\nregister_recipe('mine_x', 'nope', 'digits', 'x')\n",
     "no family 'nope' is registered"),
    (family_source() + "from recipes import register_recipe\nregister_recipe('mine_x', 'mine', 'digits', 'x', "
                       "{'no_such_key': 1})\n", "unknown config key 'no_such_key'"),
    ("import json\nvalue = {}['missing']\n", "raised on import: KeyError: 'missing'"),
    ("raise SystemExit(3)\n", "called exit(3) on import"),
    ("from evaluation import Metric, register_metric\nregister_metric(Metric('fid', 't', 'min', 'u'))\n",
     "metric 'fid' is already registered"),
    ("from evaluation import Metric, register_metric\nregister_metric(Metric('spread', 't', 'lower', 'u'))\n",
     "direction must be"),
    ("from evaluation import register_extractor\nregister_extractor('pixels', lambda **kw: None)\n",
     "extractor 'pixels' is already registered"),
]


@pytest.mark.parametrize("source,needle", BAD_PLUGINS, ids=[n for _, n in BAD_PLUGINS])
def test_a_plugin_that_breaks_the_contract_gets_one_line_naming_what(source, needle, tmp_path, registries, suite_home):
    path = tmp_path / "bad_plugin.py"
    path.write_text(textwrap.dedent(source))
    assert_one_line_error(run_main("list", "--plugin", str(path)), needle)
    assert not suite_home.exists()  # the store untouched: nothing was created


def test_missing_plugins_are_one_line(registries):
    assert_one_line_error(run_main("list", "--plugin", "no/such/file.py"), "no such file")
    assert_one_line_error(run_main("list", "--plugin", "no_such_module.sub"), "no such module")


def test_the_docs_plugin_trains_is_tagged_and_resumes_only_with_its_source(tmp_path, registries, suite_home,
                                                                           mlflow_client):
    plugin = tmp_path / "hinge.py"
    plugin.write_text(docs_plugin())
    small = sets({"batch_size": 32, "width": 8, "n_sample": 16, "sample_every": 4, "checkpoint_every": 4})
    listed = run_main("list", "--plugin", str(plugin))
    assert "hinge_fashion" in listed.stdout and f"[plugin {plugin.resolve()}]" in listed.stdout
    shown = run_main("show", "hinge_fashion", "--plugin", str(plugin), "--set", "width=16")
    assert shown.returncode == 0 and '"width": 16' in shown.stdout and '"family": "hinge"' in shown.stdout
    first = run_main("run", "hinge_fashion", "--plugin", str(plugin), "--max-steps", "4", "--no-eval", "--quiet", *small)
    assert first.returncode == 0, first.stderr[-2000:]
    run_id = first.stdout.split()[-1]
    tags = mlflow_client.get_run(run_id).data.tags
    assert tags["suite.family"] == "hinge" and tags["suite.plugin"] == str(plugin.resolve())
    assert tags["suite.plugin_sha256"] == hashlib.sha256(plugin.read_bytes()).hexdigest()

    registry.FAMILIES.pop("hinge")  # a later command that was not given the plugin
    registry.RECIPES.pop("hinge_fashion")
    plugins.LOADED.clear()
    assert_one_line_error(run_main("run", "--resume", run_id, "--max-steps", "6", "--no-eval"),
                          "comes from plugin", f"--plugin {plugin.resolve()}")
    registry.FAMILIES.pop("hinge", None)
    plugin.write_text(docs_plugin() + "# edited after the run started\n")
    changed = run_main("run", "--resume", run_id, "--plugin", str(plugin), "--max-steps", "6", "--no-eval")
    assert_one_line_error(changed, "has changed since this run started", "--allow-changed-plugin")
    assert mlflow_client.get_run(run_id).info.status == "FINISHED"  # a refused resume leaves the run as it was
    ok = run_main("run", "--resume", run_id, "--plugin", str(plugin), "--max-steps", "6", "--no-eval", "--quiet",
                  "--allow-changed-plugin")
    assert ok.returncode == 0, ok.stderr[-2000:]
    steps = sorted(m.step for m in mlflow_client.get_metric_history(run_id, "loss/g"))
    assert steps == list(range(1, 7))


# --------------------------------------------------------------------------- the two papers


def test_wgan_gp_penalty_equals_an_independent_float64_computation(registries):
    plugins.load(str(EXAMPLES / "wgan_gp.py"))
    module = plugins.imported(str(EXAMPLES / "wgan_gp.py"))
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, 1, 1), torch.nn.GroupNorm(1, 3), torch.nn.Tanh(),
                                 torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 1)).double()
    real, fake = torch.randn(3, 1, 4, 4, dtype=torch.float64), torch.randn(3, 1, 4, 4, dtype=torch.float64)
    eps = torch.rand(3, 1, 1, 1, dtype=torch.float64)
    got = module.gradient_penalty(lambda x: critic(x).view(-1), real, fake, 10.0, eps).detach()
    x_hat = eps * real + (1 - eps) * fake  # central differences of each sample's own score
    norms = []
    for i in range(3):
        grad = torch.zeros(16, dtype=torch.float64)
        for j in range(16):
            step = torch.zeros(16, dtype=torch.float64)
            step[j] = 1e-6
            up, down = x_hat[i].flatten() + step, x_hat[i].flatten() - step
            with torch.no_grad():
                grad[j] = (critic(up.view(1, 1, 4, 4)) - critic(down.view(1, 1, 4, 4))).item() / 2e-6
        norms.append(grad.norm())
    expected = 10.0 * torch.stack([(n - 1) ** 2 for n in norms]).mean()
    assert float(got) == pytest.approx(float(expected), rel=1e-6)
    assert float(got) > 0.1  # the case exercises the penalty, not a zero


def test_sngan_keeps_every_discriminator_layer_at_spectral_norm_one(registries):
    plugins.load(str(EXAMPLES / "sngan.py"))
    family = registry.family("sngan")
    cfg = registry.resolve("sngan_fashion", {"g_ch": 8, "d_ch": 8, "batch_size": 16})
    assert (cfg.optimizer, cfg.lr_g, cfg.lr_d, cfg.beta1, cfg.beta2, cfg.n_dis) == ("adam", 2e-4, 2e-4, 0.0, 0.9, 5)
    info = data.DataInfo("fashion_mnist", "image", (1, 32, 32), 64, 4)
    torch.manual_seed(0)
    trainer = family.trainer(cfg, info, "cpu")
    batches = iter([torch.rand(16, 1, 32, 32) * 2 - 1 for _ in range(5 * 8)])
    for _ in range(8):
        trainer.train_step(lambda: next(batches))
    layers = [m for m in trainer.D.modules() if hasattr(m, "parametrizations")]
    assert len(layers) == sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in trainer.D.modules()) > 5
    trainer.D.eval()  # read the weights as they are, without another power iteration
    for m in layers:
        w = m.weight.detach()
        sigma = torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2)
        assert float(sigma) == pytest.approx(1.0, abs=0.05), m


def test_the_vendi_plugin_metric_matches_its_definition_and_the_reference(registries):
    plugins.load(str(EXAMPLES / "vendi.py"))
    import vendi_score.vendi as reference

    module = plugins.imported(str(EXAMPLES / "vendi.py"))
    same = torch.ones(50, 7)
    assert module.vendi_score(same) == pytest.approx(1.0, abs=1e-9)
    eye = torch.eye(40)
    assert module.vendi_score(eye) == pytest.approx(40.0, rel=1e-9)
    x = torch.randn(300, 16) @ torch.randn(16, 16)  # d < n: the d x d route
    unit = (x / x.norm(dim=1, keepdim=True)).double().numpy()
    assert module.vendi_score(x) == pytest.approx(float(reference.score_K(unit @ unit.T, normalize=False)), rel=1e-7)
    wide = torch.randn(20, 64)  # n < d: the n x n route
    unit = (wide / wide.norm(dim=1, keepdim=True)).double().numpy()
    assert module.vendi_score(wide) == pytest.approx(float(reference.score_K(unit @ unit.T)), rel=1e-7)
    entry = metric_table.METRICS["vendi"]
    assert entry.direction == "max" and entry.origin["plugin"].endswith("vendi.py")
    assert metric_table.direction("vendi300_lenet_fashion_mnist") == "max"


# --------------------------------------------------------------------------- any set against any other


def _folder(path: Path, images: torch.Tensor) -> Path:
    from PIL import Image

    path.mkdir()
    for i, img in enumerate(images.add(1).mul(127.5).round().byte().numpy()):
        Image.fromarray(img[0]).save(path / f"{i:04d}.png")
    return path


def test_folder_against_folder_caches_the_reference_under_its_content(tmp_path, suite_home, shared_cache):
    import json

    digits = data.load("digits")
    gen = _folder(tmp_path / "gen", digits.test.x[:120])
    real = _folder(tmp_path / "real", digits.train.x[:400])
    first = run_main("evaluate", "--samples", str(gen), "--reference", str(real), "--extractor", "pixels", "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    values = json.loads(first.stdout)["metrics"]
    fid_name = next(k for k in values if k.startswith("fid120_pixels_ref-") and k.endswith("_train"))
    stats_files = set((shared_cache / "stats").glob("ref-*"))
    again = json.loads(run_main("evaluate", "--samples", str(gen), "--reference", str(real), "--extractor", "pixels",
                                "--json").stdout)["metrics"]
    assert again[fid_name] == values[fid_name] and set((shared_cache / "stats").glob("ref-*")) == stats_files
    named = json.loads(run_main("evaluate", "--samples", str(gen), "--reference", str(real), "--extractor", "pixels",
                                "--reference-name", "mydigits", "--json").stdout)["metrics"]
    assert named["fid120_pixels_mydigits_train"] == pytest.approx(values[fid_name])
    other = _folder(tmp_path / "other", digits.train.x[400:800])  # other content: another name, another cache
    moved = json.loads(run_main("evaluate", "--samples", str(gen), "--reference", str(other), "--extractor", "pixels",
                                "--json").stdout)["metrics"]
    assert fid_name not in moved
    assert_one_line_error(run_main("evaluate", "--samples", str(gen), "--reference", str(other), "--extractor",
                                   "pixels", "--reference-name", "mydigits"), "already a dataset of other images")
    assert not (suite_home / "mlflow.db").exists()  # evaluation creates no run


GENERATOR = '''
import torch
from torch import nn

class Tiny(nn.Module):
    latent_dim = 8
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 64)
    def forward(self, z):
        return torch.tanh(self.fc(z)).view(-1, 1, 8, 8)

def build():
    return Tiny()
'''


def test_a_users_generator_file_is_sampled_with_its_weights(tmp_path, suite_home):
    import json

    (tmp_path / "gen.py").write_text(GENERATOR)
    torch.manual_seed(1)
    exec(compile(GENERATOR, "gen", "exec"), scope := {})
    weights = tmp_path / "G.pt"
    torch.save(scope["build"]().state_dict(), weights)
    args = ["evaluate", "--generator", f"{tmp_path / 'gen.py'}:build", "--weights", str(weights), "--n", "200",
            "--dataset", "digits", "--extractor", "pixels", "--json"]
    out = run_main(*args)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "fid200_pixels_digits_train" in json.loads(out.stdout)["metrics"]
    torch.save({"other": torch.zeros(2)}, tmp_path / "wrong.pt")
    assert_one_line_error(run_main(*args[:4], str(tmp_path / "wrong.pt"), *args[5:]), "do not fit build()")
    assert_one_line_error(run_main(*args[:2], f"{tmp_path / 'gen.py'}:nothing", *args[3:]), "no callable 'nothing'")
    assert_one_line_error(run_main(*[a for a in args if a not in ("--n", "200")]), "--generator needs --n")


EXTRACTOR = '''
import torch
from evaluation import register_extractor

def build(dataset, device="cpu", **_):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 12))

register_extractor("tiny", build, size=8)
'''


def test_a_plugin_extractor_and_a_plugin_metric_work_like_built_ins(tmp_path, registries, suite_home):
    import json

    (tmp_path / "ext.py").write_text(EXTRACTOR)
    x = data.load("digits").test.x[:150]
    np.save(tmp_path / "s.npy", x.add(1).mul(127.5).round().byte().numpy())
    out = run_main("evaluate", "--samples", str(tmp_path / "s.npy"), "--dataset", "digits", "--extractor", "tiny",
                   "--plugin", str(tmp_path / "ext.py"), "--plugin", str(EXAMPLES / "vendi.py"), "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    values = json.loads(out.stdout)["metrics"]
    assert "fid150_tiny_digits_train" in values and 1 < values["vendi150_tiny_digits"] < 150


def test_the_python_api_evaluates_without_a_run_and_returns_flat_protocol_names(suite_home):
    from suite import api

    digits = data.load("digits")
    out = api.evaluate(digits.test.x[:100], dataset="digits", extractor="pixels", metrics=["fid", "kid"])
    assert set(out) == {"fid100_pixels_digits_train", "kid100_pixels_digits_train_subset100",
                        "kid100_pixels_digits_train_subset100_std"}
    assert all(math.isfinite(v) for v in out.values())
    assert not (suite_home / "mlflow.db").exists()
    with pytest.raises(Exception, match="ambiguous"):
        api.evaluate(digits.test.x[:100].add(1).div(2), dataset="digits", extractor="pixels")
    in_01 = api.evaluate(digits.test.x[:100].add(1).div(2), dataset="digits", extractor="pixels", value_range="0,1")
    full = api.evaluate(digits.test.x[:100], dataset="digits", extractor="pixels")
    assert in_01["fid100_pixels_digits_train"] == pytest.approx(full["fid100_pixels_digits_train"], abs=1e-6)


def test_the_python_api_runs_twice_lists_runs_and_loads_a_generator(suite_home):
    from suite import api

    over = {**{k: v for k, v in TINY_DC.items()}, "sample_every": 5, "checkpoint_every": 5}
    first = api.run("dcgan_digits", max_steps=5, evaluate=False, progress=False, **over)
    second = api.run("dcgan_digits:lr_g=1e-4", max_steps=5, evaluate=False, progress=False, **over)
    assert first.status == second.status == "FINISHED" and first.run_id != second.run_id
    assert "loss/g" in first.metrics
    before = os.environ.get("MLFLOW_TRACKING_URI")
    table = api.runs("dcgan_digits")
    assert os.environ.get("MLFLOW_TRACKING_URI") == before  # a library call leaves its host's environment alone
    assert set(table["run_id"]) == {first.run_id, second.run_id}
    assert set(table.loc[table["run_id"] == second.run_id, "params.lr_g"]) == {"0.0001"}
    G = api.load_generator(first.run_id, "last")
    s = G.sample(10, seed=3)
    assert s.shape == (10, 1, 16, 16) and torch.equal(s, G.sample(10, seed=3))


# --------------------------------------------------------------------------- studies and benchmarks of plugin families


@pytest.mark.slow  # a study and a benchmark with two worker processes each
def test_plugin_families_are_tuned_and_benchmarked_by_worker_processes_against_built_ins(tmp_path, suite_home,
                                                                                       mlflow_client):
    import json
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT), "SUITE_HOME": str(suite_home)}
    plugin = str(EXAMPLES / "wgan_gp.py")
    small = sets({"image_size": 16, "ngf": 8, "ndf": 8, "batch_size": 32, "n_sample": 16, "eval_n": 200,
                  "sample_every": 10, "checkpoint_every": 10})
    tune = subprocess.run([sys.executable, "-m", "suite", "tune", "wgangp_fashion", "--plugin", plugin, "--trials", "2",
                           "--workers", "2", "--max-steps", "4", "--quiet", *small], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert tune.returncode == 0, tune.stderr[-3000:]
    assert json.loads(tune.stdout)["complete"] == 2
    bench = subprocess.run([sys.executable, "-m", "suite", "benchmark", "wgan_fashion", "wgangp_fashion", "--plugin",
                            plugin, "--seeds", "2", "--workers", "2", "--max-steps", "3", "--json",
                            *[a for a in small]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert bench.returncode == 0, bench.stderr[-3000:]
    out = json.loads(bench.stdout)
    assert {r["spec"] for r in out["rows"]} == {"wgan_fashion", "wgangp_fashion"} and not out["missing"]
    assert [(c["a"], c["b"]) for c in out["comparisons"]] == [("wgan_fashion", "wgangp_fashion")]
    cells = [r for r in mlflow_client.search_runs([mlflow_client.get_experiment_by_name("benchmarks").experiment_id])
             if r.data.tags.get("suite.spec") == "wgangp_fashion"]
    assert len(cells) == 2 and all(r.data.tags["suite.plugin"] == plugin for r in cells)
    report = run_main("report", "--benchmark", out["benchmark"], "-o", str(tmp_path / "b.html"), "--plugin", plugin)
    assert report.returncode == 0, report.stderr[-2000:]
    one = run_main("report", cells[0].info.run_id, "-o", str(tmp_path / "r.html"), "--plugin", plugin)
    assert one.returncode == 0 and "Wasserstein estimate" in (tmp_path / "r.html").read_text()


def test_a_study_or_benchmark_joined_with_another_plugin_source_is_refused(tmp_path, registries):
    from suite.core.errors import PluginError

    plugin = tmp_path / "hinge.py"
    plugin.write_text(docs_plugin())
    origin = plugins.load(str(plugin))
    saved = plugins.sources(["hinge", "dcgan"])
    assert saved == {str(plugin.resolve()): origin["sha256"]}  # built-ins carry no source to check
    plugins.check_same_sources(saved, "benchmark 'b'")  # the same source: joins
    plugins.LOADED[str(plugin.resolve())] = {**origin, "sha256": "0" * 64}
    with pytest.raises(PluginError, match="another version of plugin"):
        plugins.check_same_sources(saved, "benchmark 'b'")
    plugins.LOADED.clear()
    with pytest.raises(PluginError, match="pass --plugin"):
        plugins.check_same_sources(saved, "study 's'")
