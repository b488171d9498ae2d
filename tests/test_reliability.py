"""Reliability: bad input on every command, concurrent writers, hostile checkpoints.

Every bad-input case runs against one populated store and must leave it exactly as it was:
one line on stderr, no traceback, a non-zero exit, no run left RUNNING, nothing logged changed.
The cases run in this process through `suite.cli.main`; those in SUBPROCESS run as real
`python -m suite` processes too, proving the entry point, its exit codes and its stderr.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import ROOT, TINY_DC, assert_one_line_error, run_cli, run_main, sets
from tests.servers import free_port

TINY_RUN = ["--max-steps", "4", *sets({**TINY_DC, "sample_every": 2})]
RING = sets({"g_hidden": "16", "d_hidden": "16", "eval_n": 500, "n_sample": 100})


class Evil:
    """Unpickling this runs a shell command: a checkpoint must never be loaded that way."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with a finished run ('kept') and one whose checkpoints were later truncated
    ('victim'), plus the files the cases read."""
    tmp = tmp_path_factory.mktemp("reliability")
    home = tmp / "suite_home"
    env = {"SUITE_HOME": str(home), "HOME": str(tmp)}
    ids = {}
    for name in ("kept", "victim", "garbled"):
        proc = run_main("run", "dcgan_digits", *TINY_RUN, "--no-eval", env=env)
        assert proc.returncode == 0, proc.stderr
        ids[name] = proc.stdout.split()[-1]
    from suite.core import paths, tracking

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUITE_HOME", str(home))
        for which in ("last", "best"):
            path = paths.run_dir(ids["victim"]) / "checkpoints" / f"{which}.pt"
            if path.is_file():
                path.write_bytes(path.read_bytes()[:1000])
        config = Path(tracking.get_run(ids["garbled"]).info.artifact_uri.removeprefix("file://")) / "config.json"
        config.write_text('{"recipe": "dcgan_digits", "family": ')  # edited by hand, cut short
        # not training runs: a classifier's run and a study's parent, as the suite logs them
        ids["classifier"] = tracking.Tracker.create("classifiers", "digits-0123", {"dataset": "digits"},
                                                    {"suite.classifier": "digits"}, {"dataset": "digits"}).run_id
        ids["study"] = tracking.Tracker.create("gan_ring8", "study-x", {"trials": 2}, {"suite.kind": "study"},
                                               {"study": {"recipe": "gan_ring8"}, "config": {}}).run_id
        for rid in (ids["classifier"], ids["study"]):
            tracking.Tracker.attach(rid).finish("FINISHED")
    files = tmp / "files"
    files.mkdir()
    corrupt = files / "corrupt_home"
    corrupt.mkdir()
    (corrupt / "mlflow.db").write_bytes((home / "mlflow.db").read_bytes()[:3000])  # truncated
    from PIL import Image

    for folder, size in (("notimage", (28, 28)), ("truncated", (28, 28)), ("oblong", (28, 40))):
        (files / folder).mkdir()
        for i in range(20):
            Image.fromarray(np.full(size, 60 + i, np.uint8)).save(files / folder / f"{i:02d}.jpg")
    (files / "notimage" / "20.png").write_text("this is not a picture")
    jpeg = (files / "truncated" / "00.jpg").read_bytes()
    (files / "truncated" / "00.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    np.save(files / "nan.npy", np.full((10, 28, 28), np.nan, np.float32))
    np.save(files / "shape.npy", np.zeros((10, 5), np.float32))
    np.save(files / "empty.npy", np.zeros((0, 28, 28), np.uint8))
    np.save(files / "range.npy", np.full((10, 28, 28), -3.0, np.float32))
    np.save(files / "positive.npy", np.full((30, 28, 28), 0.5, np.float32))
    np.save(files / "structured.npy", np.zeros(30, dtype=[("a", "f4"), ("b", "i4")]))
    np.save(files / "rgb.npy", np.zeros((10, 3, 28, 28), np.float32))
    np.save(files / "ok.npy", np.zeros((20, 28, 28), np.uint8))
    np.save(files / "few.npy", np.zeros((10, 28, 28), np.uint8))
    torch.save({"samples": Evil()}, files / "evil.pt")
    torch.save({"x": torch.zeros(3)}, files / "inception.pth")  # right format, wrong weights
    (files / "empty_folder").mkdir()
    (files / "empty_root").mkdir()
    (files / "a_file").write_text("not a folder")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield {"home": home, "env": env, **ids, "files": files, "busy": busy.getsockname()[1]}


def snapshot(home):
    """Everything logged: runs with status, params, tags, metric histories and artifact lists."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    out = {}
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id]):
            rid = run.info.run_id
            history = {k: [(m.step, m.value) for m in client.get_metric_history(rid, k)] for k in run.data.metrics}
            arts, todo = [], [""]
            while todo:
                for f in client.list_artifacts(rid, todo.pop() or None):
                    (todo.append(f.path) if f.is_dir else arts.append((f.path, f.file_size)))
            out[rid] = (run.info.status, run.info.end_time, run.data.params, run.data.tags, history, sorted(arts))
    return out


# (command line, needles in the error line); {files}, {kept}, {victim}, {busy}, {free} are filled in.
CASES = [
    # run / show: recipes, datasets and config values
    (["run", "no_such_recipe"], ["unknown recipe 'no_such_recipe'"]),
    (["run", "wgan_lsn"], ["did you mean wgan_lsun"]),
    (["show", "no_such_recipe"], ["unknown recipe"]),
    (["show", "dcgan_fashion", "--set", "lr=1e-3"], ["unknown config key 'lr'", "lr_g"]),
    (["show", "dcgan_fashion", "--set", "lr_g"], ["--set expects key=value"]),
    (["show", "dcgan_fashion", "--set", "lr_g=-1e-4"], ["invalid lr_g"]),
    (["run", "dcgan_fashion", "--set", "lr_d=0"], ["invalid lr_d"]),
    (["show", "dcgan_fashion", "--set", "lr_d=nan"], ["invalid lr_d"]),
    (["run", "wgan_fashion", "--set", "n_critic=0"], ["invalid n_critic=0"]),
    (["show", "wgan_fashion", "--set", "clip_value=-0.01"], ["invalid clip_value"]),
    (["run", "wgan_fashion", "--set", "clip_value=0"], ["invalid clip_value"]),
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
    (["run", "wgan_lsun", "--data-root", "{files}/empty_root"], ["lsun_bedroom", "--data-root"]),
    (["run", "cyclegan_horse2zebra", "--data-root", "{files}/empty_root"], ["horse2zebra"]),
    # resume
    (["run", "--resume", "0123456789abcdef"], ["no run with id"]),
    (["run", "--resume", "{victim}", "--max-steps", "8"], ["corrupt or truncated"]),
    # tracking store
    (["run", "dcgan_digits", "--max-steps", "2", "@MLFLOW_TRACKING_URI=http://127.0.0.1:{free}"], ["unreachable"]),
    # evaluate: samples, runs, feature extractors
    (["evaluate", "--samples", "{files}/nan.npy", "--dataset", "fashion_mnist"], ["NaN"]),
    (["evaluate", "--samples", "{files}/shape.npy", "--dataset", "fashion_mnist"], ["N x H x W"]),
    (["evaluate", "--samples", "{files}/empty.npy", "--dataset", "fashion_mnist"], ["empty"]),
    (["evaluate", "--samples", "{files}/range.npy", "--dataset", "fashion_mnist"], ["[-1, 1]"]),
    (["evaluate", "--samples", "{files}/rgb.npy", "--dataset", "fashion_mnist"], ["channels"]),
    (["evaluate", "--samples", "{files}/positive.npy", "--dataset", "fashion_mnist"], ["ambiguous", "--range 0,1"]),
    (["evaluate", "--samples", "{files}/range.npy", "--dataset", "fashion_mnist", "--range", "0,1"],
     ["outside the stated range [0,1]"]),
    (["evaluate", "--samples", "{files}/structured.npy", "--dataset", "fashion_mnist"], ["structured"]),
    (["evaluate", "--samples", "{files}/empty_folder", "--dataset", "fashion_mnist"], ["no images"]),
    (["evaluate", "--samples", "{files}/ok.npy", "--dataset", "imagenet"], ["invalid choice: 'imagenet'"]),
    (["evaluate", "--samples", "{files}/evil.pt", "--dataset", "fashion_mnist"], ["refused", "weights_only"]),
    (["evaluate", "--samples", "{files}/ok.npy", "--dataset", "fashion_mnist", "--extractor", "inception",
      "--inception-weights", "{files}/inception.pth"], ["is not the FID Inception-v3 weights file"]),
    (["evaluate", "--samples", "{files}/ok.npy", "--dataset", "fashion_mnist", "--extractor", "resnet"],
     ["invalid choice: 'resnet'"]),
    (["evaluate", "0123456789abcdef"], ["no run with id"]),
    (["evaluate", "{victim}", "--checkpoint", "last"], ["corrupt or truncated"]),
    (["evaluate", "{kept}", "--checkpoint", "newest"], ["invalid choice: 'newest'"]),
    # tune
    (["tune", "gan_ring8", "--trials", "2", "--max-steps", "20", "--params", "lr", "--storage",
      "sqlite:///{files}/t.db", *RING], ["not a config field"]),
    (["tune", "gan_ring8", "--trials", "2", "--max-steps", "20", "--params", "lr_g:1e-3:1e-5", "--storage",
      "sqlite:///{files}/t.db", *RING], ["invalid range"]),
    (["tune", "gan_ring8", "--trials", "0", "--max-steps", "20", "--storage", "sqlite:///{files}/t.db"], [">= 1"]),
    (["tune", "gan_ring8", "--sampler", "grid"], ["invalid choice"]),
    (["tune", "gan_ring8", "--trials", "2", "--max-steps", "20", "--storage", "postgresql://u@127.0.0.1:{free}/x"],
     ["cannot open Optuna storage"]),
    # report
    (["report"], ["report needs RUN_ID"]),
    (["report", "0123456789abcdef"], ["no run with id"]),
    (["report", "--study", "nope"], ["no study named 'nope'"]),
    (["report", "--experiment", "nope"], ["no experiment named 'nope'"]),
    (["report", "{kept}", "--format", "pdf"], ["invalid choice: 'pdf'"]),
    (["report", "{kept}", "-o", "{files}/a_file/r.html"], ["cannot write the report"]),
    # ui
    (["ui", "--port", "{busy}"], ["port {busy}", "in use"]),
    (["ui", "--port", "99999"], ["--port"]),
    # issue 11: the store and SUITE_HOME
    (["run", "dcgan_digits", "--max-steps", "1", "@SUITE_HOME={files}/corrupt_home"],
     ["not a readable SQLite database"]),
    (["report", "{kept}", "@SUITE_HOME={files}/corrupt_home"], ["not a readable SQLite database"]),
    (["run", "dcgan_digits", "--max-steps", "1", "@SUITE_HOME={files}/a_file"], ["is a file, not a folder"]),
    (["run", "dcgan_digits", "--max-steps", "1", "@SUITE_HOME={files}/odd#name%20"], ["cannot carry"]),
    (["run", "--resume", "{garbled}"], ["config.json is not valid JSON"]),
    (["evaluate", "{garbled}"], ["config.json is not valid JSON"]),
    (["evaluate", "{classifier}"], ["not a training run", "classifier"]),
    (["run", "--resume", "{study}"], ["not a training run", "study"]),
    # numbers out of range
    (["run", "dcgan_digits", "--seed", "100000000000000000000000"], ["invalid seed"]),
    (["run", "dcgan_digits", "--seed", "18446744073709551615"], ["invalid seed"]),
    (["run", "dcgan_digits", "--set", "eval_n=5"], ["eval_n=5", "at least 20 samples"]),
    (["evaluate", "{kept}", "--n", "0"], ["--n must be a positive"]),
    (["evaluate", "{kept}", "--n", "-5"], ["--n must be a positive"]),
    (["evaluate", "{kept}", "--checkpoint", "last", "--n", "10"], ["at least 20 samples", "Inception Score"]),
    (["evaluate", "--samples", "{files}/few.npy", "--dataset", "fashion_mnist"], ["10 samples", "at least 20"]),
    (["run", "dcgan_digits", "--set", "image_size=65536", "--no-eval"], ["out of memory", "GiB"]),
    (["run", "gan_ring8", "--set", "n_sample=10000000000", "--no-eval"], ["out of memory", "GiB"]),
    # image folders
    (["evaluate", "--samples", "{files}/notimage", "--dataset", "fashion_mnist"], ["20.png is not a readable image"]),
    (["evaluate", "--samples", "{files}/truncated", "--dataset", "fashion_mnist"], ["00.jpg is not a readable image"]),
    (["evaluate", "--samples", "{files}/oblong", "--dataset", "fashion_mnist"], ["28x40", "crop them to a square"]),
    # tune
    (["tune", "gan_ring8", "--trials", "1", "--max-steps", "20", "--metric", "fid_of_nothing", "--storage",
      "sqlite:///{files}/t.db", *RING], ["not an evaluation metric"]),
    (["tune", "gan_ring8", "--trials", "1", "--max-steps", "20", "--timeout", "0", "--storage",
      "sqlite:///{files}/t.db"], ["--timeout must be a positive"]),
    (["tune", "gan_ring8", "--trials", "1", "--max-steps", "20", "--timeout", "-3", "--storage",
      "sqlite:///{files}/t.db"], ["--timeout must be a positive"]),
]


# A parse error, an unknown name, bad samples, an unreachable store, a busy port: as processes.
SUBPROCESS = {"frobnicate", "run-no_such_recipe", "evaluate---samples-nan.npy---dataset",
              "run-dcgan_digits---max-steps-2", "ui---port-busy"}


def case_id(case):
    args = case[0]
    return "-".join(a.replace("{", "").replace("}", "").split("/")[-1][:24] for a in args[:4]) or "empty"


@pytest.mark.parametrize("args,needles", CASES, ids=[case_id(c) for c in CASES])
def test_bad_input_is_one_line_and_leaves_the_store_alone(store, args, needles):
    if "cuda:0" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA, so --device cuda is valid input here")
    fill = {**{k: store[k] for k in ("files", "kept", "victim", "garbled", "classifier", "study", "busy")},
            "free": free_port()}
    env = dict(store["env"])
    argv = []
    for a in args:
        a = a.format(**fill)
        if a.startswith("@"):
            key, value = a[1:].split("=", 1)
            env[key] = value
        else:
            argv.append(a)
    before, files_before = snapshot(store["home"]), sorted(store["files"].rglob("*"))
    runner = run_cli if case_id((args, needles)) in SUBPROCESS else run_main
    proc = runner(*argv, env=env, cwd=store["files"])
    assert_one_line_error(proc, *[n.format(**fill) for n in needles])
    after = snapshot(store["home"])
    assert after == before
    assert sorted(store["files"].rglob("*")) == files_before  # nothing left behind (e.g. an empty report)
    assert not [rid for rid, (status, *_) in after.items() if status == "RUNNING"]
    assert not (store["files"] / "PWNED").exists()


@pytest.mark.slow  # three processes at once
def test_two_runs_and_an_evaluation_share_one_store_at_once(suite_home, mlflow_client, tmp_path):
    """Two training processes and an evaluation of a third run write to one SQLite store at
    the same time; every run finishes with every step's metrics, nothing is lost."""
    env = {"SUITE_HOME": str(suite_home)}
    first = run_cli("run", "dcgan_digits", "--max-steps", "30", *sets({**TINY_DC, "eval_every": 0}), env=env)
    assert first.returncode == 0, first.stderr
    evaluated = first.stdout.split()[-1]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    cmds = [["run", "dcgan_digits", "--max-steps", "60", "--seed", str(s), *sets({**TINY_DC, "eval_every": 0})]
            for s in (1, 2)] + [["evaluate", evaluated, "--checkpoint", "last", "--n", "500", "--json"]]
    procs = [subprocess.Popen([sys.executable, "-m", "suite", *c], env=full_env, cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in cmds]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-500:] for o in outs]
    for out in outs[:2]:
        run = mlflow_client.get_run(out[0].split()[-1])
        assert run.info.status == "FINISHED"
        for key in ("loss/d", "loss/g", "d_real", "d_fake"):
            steps = [m.step for m in mlflow_client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == list(range(1, 61)), key  # every step exactly once
    evaluated_run = mlflow_client.get_run(evaluated)
    assert evaluated_run.info.status == "FINISHED"
    fid_keys = [k for k in evaluated_run.data.metrics if k.startswith("fid")]
    assert fid_keys and all(np.isfinite(evaluated_run.data.metrics[k]) for k in fid_keys)


def test_a_pickled_payload_in_a_checkpoint_is_refused_not_run(tmp_path, monkeypatch):
    from suite.core import checkpoint
    from suite.core.errors import CheckpointError

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"trainer": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        checkpoint.load(path)
    assert not (tmp_path / "PWNED").exists()


def test_inception_weights_are_verified_by_their_full_hash_and_never_unpickled(tmp_path, monkeypatch):
    """A planted pickle payload that passes the hash check (the expected hash patched to the
    file's own) is refused without running; a file matching only the hash's first 8 digits,
    the part in the official file name, is not taken for the official one."""
    from evaluation import features
    from suite.core.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SUITE_ALLOW_UNVERIFIED_INCEPTION", raising=False)
    evil = tmp_path / features.INCEPTION_FILE
    torch.save({"Conv2d_1a_3x3.conv.weight": Evil()}, evil)
    digest = features.sha256(evil)
    monkeypatch.setattr(features, "INCEPTION_SHA256", digest)
    with pytest.raises(ConfigError, match="refused"):
        features.get("inception", "celeba", inception_weights=str(evil))
    assert not (tmp_path / "PWNED").exists()
    monkeypatch.setattr(features, "INCEPTION_SHA256", digest[:8] + "0" * 56)
    with pytest.raises(ConfigError, match="is not the FID Inception-v3 weights file"):
        features.get("inception", "celeba", inception_weights=str(evil))
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.slow  # a PostgreSQL cluster and several processes: ~35 s
def test_a_storage_password_is_never_stored_shown_or_passed_in_argv(tmp_path, suite_home):
    """`tune --storage postgresql://user:PW@...` with two workers: no process argument, no file
    under the store, no output line holds the password; an unreachable storage's error hides it."""
    import uuid

    from tests.servers import postgres, postgres_bin

    secret = f"pw-{uuid.uuid4().hex[:12]}"
    small = [*sets({"g_hidden": "8", "d_hidden": "8", "eval_n": 200, "n_sample": 50, "eval_every": 10,
                    "sample_every": 100}), "--max-steps", "10"]
    down = run_main("tune", "gan_ring8", "--trials", "1", *small, "--storage",
                    f"postgresql+psycopg2://u:{secret}@127.0.0.1:{free_port()}/x")
    assert_one_line_error(down, "cannot open Optuna storage")
    assert secret not in down.stderr + down.stdout
    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql): the reachable case needs it")
    mark = uuid.uuid4().hex
    with postgres(tmp_path) as url:
        url = url.replace("postgres@", f"postgres:{secret}@")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SUITE_HOME": str(suite_home), "SUITE_TEST_MARK": mark}
        proc = subprocess.Popen([sys.executable, "-m", "suite", "tune", "gan_ring8", "--trials", "1", "--workers", "2",
                                 *small, "--storage", url], cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        seen, typed = set(), (Path("/proc") / str(proc.pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        while proc.poll() is None:
            for pid, argv in _marked_argv(mark):
                seen.add(pid)
                typed = argv if pid == proc.pid else typed
                if argv != typed:  # what the user typed (and a fork's copy of it before its exec)
                    assert secret not in argv, argv
        out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert len(seen) >= 4  # coordinator, two workers, their metric writers: all were looked at
    assert secret not in out + err
    leaks = [p for p in suite_home.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert not leaks


def _marked_argv(mark: str):
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and f"SUITE_TEST_MARK={mark}".encode() in (d / "environ").read_bytes():
                yield int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue


def test_json_output_stays_valid_json_when_a_metric_is_not_finite():
    from suite import cli

    text = cli.dump_json({"metrics": {"fid": 1.5, "kid": float("nan"), "is": float("inf")}, "step": 3})
    out = json.loads(text)  # the standard parser: NaN is not JSON
    assert "NaN" not in text and "Infinity" not in text
    assert out["metrics"] == {"fid": 1.5, "kid": None, "is": None} and out["step"] == 3
    assert set(out["non_finite"]) == {"metrics.kid", "metrics.is"} and "nan" in out["non_finite"]["metrics.kid"]


def test_a_corrupt_cache_file_is_rebuilt_and_never_called_a_checkpoint(tmp_path, capsys):
    from evaluation import stats

    path = tmp_path / "digits-heldout-nn-lenet-abc.pt"
    path.write_bytes(b"garbage, not a torch file")
    d = stats.cached_distances(path, lambda: torch.arange(4.0))
    assert torch.equal(d, torch.arange(4.0))
    err = capsys.readouterr().err
    assert f"cache file {path} is unusable" in err and "rebuilding" in err and "checkpoint" not in err
    assert torch.equal(stats.cached_distances(path, lambda: torch.zeros(4)), torch.arange(4.0))  # rebuilt, then used
    torch.save({"other": torch.zeros(2)}, path)  # a readable file of the wrong kind
    assert torch.equal(stats.cached_distances(path, lambda: torch.ones(4)), torch.ones(4))


@pytest.mark.slow  # trains the digits classifier again
def test_a_corrupt_classifier_cache_is_retrained(tmp_path, monkeypatch, capsys):
    from evaluation import classifier
    from suite import data

    monkeypatch.setenv("SUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SUITE_HOME", str(tmp_path / "home"))
    _, meta = classifier.load_or_train("digits")
    path = classifier.cache_path("digits", meta["weights_hash"])
    for bad in (b"not a torch file", None):
        if bad is None:
            torch.save({"model": {"w": torch.zeros(1)}, "meta": {"channels": 1, "size": 8, "n_classes": 10}}, path)
        else:
            path.write_bytes(bad)
        capsys.readouterr()
        model, again = classifier.load_or_train("digits")
        err = capsys.readouterr().err
        assert "is unusable" in err and "rebuilding" in err and "checkpoint" not in err
        assert again["test_accuracy"] > 0.85 and classifier.load_or_train("digits")[1]["weights_hash"] == again["weights_hash"]
    assert data.get_spec("digits")
