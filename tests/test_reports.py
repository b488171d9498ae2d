"""Reports: built from real runs, rendered in headless Chromium and checked as a person would."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from PIL import Image

from suite import harness, run_setup
from tests.helpers import ROOT, TINY_DC, run_cli, run_main
from tests.servers import render

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short dcgan_digits runs with evaluation; one has a hostile name."""
    home = tmp_path_factory.mktemp("reports_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUITE_HOME", str(home))
        ids = []
        for seed, name in ((0, "digits-seed0"), (1, EVIL)):
            req = run_setup.RunRequest(recipe="dcgan_digits", max_steps=30, seed=seed, progress=False, run_name=name,
                                     overrides={**TINY_DC, "eval_every": 10, "eval_n": 500, "sample_every": 10})
            ids.append(harness.train(req))
        yield home, ids


@pytest.mark.slow  # headless Chromium
def test_run_comparison_report_renders_in_chromium(runs, tmp_path):
    home, ids = runs
    out = tmp_path / "report.html"
    proc = run_cli("report", *ids, "-o", str(out), env={"SUITE_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert not re.search(r"(src|href)=['\"]https?://", text)  # self-contained, readable offline
    dom, shot = render(out, tmp_path)
    shutil.copy(shot, ROOT / ".pytest_cache" / "report_screenshot.png") if (ROOT / ".pytest_cache").is_dir() else None
    loaded = int(re.search(r'data-images-loaded="(\d+)"', dom).group(1))
    total = int(re.search(r'data-images-total="(\d+)"', dom).group(1))
    assert total >= 12 and loaded == total  # every figure decoded with a non-zero size
    for title in ("2 runs compared", "Comparison of runs", "Training curves", "Evaluation over training",
                  "Samples from fixed noise", "Checks", "Latent space"):
        assert title in dom, title
    table = dom[dom.index("Comparison of runs"):]
    body = table[table.index("<tbody>"):table.index("</tbody>")]
    assert body.count("<tr") == 2 and body.count("class=\"best\"") == 1
    # a hostile run name is shown as text, never run as script
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and EVIL not in dom.replace("<script>function", "")
    assert "No mode collapse" in dom or "Mode collapse FLAGGED" in dom
    assert "memorization" in dom.lower()
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape[1] == 1280 and pixels.std() > 20  # a real page, not a blank one


def test_single_run_report_is_logged_to_the_run_and_markdown_works(runs, tmp_path):
    from mlflow.tracking import MlflowClient

    home, ids = runs
    env = {"SUITE_HOME": str(home)}
    proc = run_main("report", ids[0], "-o", str(tmp_path / "one.html"), env=env)
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    assert "report/index.html" in {f.path for f in client.list_artifacts(ids[0], "report")}
    md = run_main("report", ids[0], "--format", "md", "-o", str(tmp_path / "one.md"), env=env)
    assert md.returncode == 0, md.stderr
    text = (tmp_path / "one.md").read_text()
    pngs = list((tmp_path / "one_files").glob("*.png"))
    assert "## Training curves" in text.replace("### ", "## ") and len(pngs) >= 6
    assert all(p.name in text for p in pngs)
    hostile = run_main("report", ids[1], "--format", "md", "-o", str(tmp_path / "evil.md"), env=env)
    assert hostile.returncode == 0, hostile.stderr
    text = (tmp_path / "evil.md").read_text()
    assert EVIL not in text and "<script" not in text  # run name, title and tags escaped as in the HTML report
    assert "## Run &lt;script&gt;alert(1)&lt;/script&gt;" in text


@pytest.mark.slow  # a study, then headless Chromium
def test_experiment_and_study_reports(runs, tmp_path):
    home, _ = runs
    env = {"SUITE_HOME": str(home)}
    exp = run_cli("report", "--experiment", "dcgan_digits", "-o", str(tmp_path / "exp.html"), env=env)
    assert exp.returncode == 0, exp.stderr
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    tune = run_cli("tune", "gan_ring8", "--trials", "3", "--storage", storage, "--study-name", "rep",
                   "--max-steps", "60", "--set", "g_hidden=32,32", "--set", "d_hidden=32", "--set", "eval_n=1000",
                   "--set", "n_sample=100", env=env)
    assert tune.returncode == 0, tune.stderr
    out = tmp_path / "study.html"
    proc = run_cli("report", "--study", "rep", "-o", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    dom, _ = render(out, tmp_path)
    assert "Study rep" in dom and "Optuna plots" in dom and "Trial runs" in dom
    assert "paper's default scored" in dom
    assert "Budget curve" in dom and "expected best score of k trials" in dom  # two startup trials: never pruned
    trials = dom[dom.index("trials (highlighted: best)"):]
    assert trials[:trials.index("</tbody>")].count("<tr") == 1 + 3  # header + three trials
    assert int(re.search(r'data-images-loaded="(\d+)"', dom).group(1)) >= 3


