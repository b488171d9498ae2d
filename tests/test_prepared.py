"""`suite prepare`: a file-backed dataset decoded once, pixels equal to the on-the-fly path's to
the bit, runs reading it memory-mapped (and saying so), the same batches on resume, a changed
source refused in one line, an interrupted prepare resumed where it stopped."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from suite import api, data
from suite.data import prepared
from suite.data.readers import ArrayImages
from suite.data.stream import BatchStream
from tests.helpers import assert_one_line_error, run_main, sets
from tests.test_data import _jpeg, make_lsun_lmdb


@pytest.fixture
def lsun(tmp_path, suite_home):
    make_lsun_lmdb(tmp_path / "lsun")
    return tmp_path / "lsun"


def test_prepared_pixels_equal_the_on_the_fly_pixels(lsun):
    proc = run_main("prepare", "lsun_bedroom", "--size", "32", "--data-root", str(lsun), "--workers", "0", "--quiet")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["count"] == 40 and out["shape"] == [3, 32, 32] and out["size"] == 32 and "CenterCrop" in out["transform"]
    fly = data.load("lsun_bedroom", data_root=lsun, image_size=32, prepared=False)
    ready = data.load("lsun_bedroom", data_root=lsun, image_size=32)
    assert isinstance(ready.train, ArrayImages) and ready.meta["source"].startswith("prepared ")
    assert fly.meta["source"] == "decoded on the fly"
    for i in range(40):
        assert torch.equal(ready.train[i], fly.train[i]), i
    assert data.load("lsun_bedroom", data_root=lsun, image_size=64).meta["source"] == "decoded on the fly"  # other size


def test_a_run_on_prepared_data_sees_the_same_batches_and_says_which_source(lsun, suite_home, mlflow_client):
    api.prepare("lsun_bedroom", 16, lsun, workers=0, progress=False)
    fly = data.load("lsun_bedroom", data_root=lsun, image_size=16, prepared=False)
    ready = data.load("lsun_bedroom", data_root=lsun, image_size=16)
    a, b = BatchStream(fly, 8, seed=3, device="cpu"), BatchStream(ready, 8, seed=3, device="cpu")
    for _ in range(7):  # past an epoch boundary (5 batches of 8 per epoch)
        assert torch.equal(a(), b())
    state = b.state_dict()
    resumed = BatchStream(ready, 8, seed=3, device="cpu")
    resumed.load_state_dict(state)
    assert torch.equal(resumed(), a())
    over = {"ngf": 4, "ndf": 4, "batch_size": 8, "critic_burst": 2, "num_workers": 0, "image_size": 16,
            "n_extra_layers": 0}
    for flag, source in (("true", "prepared "), ("false", "decoded on the fly")):
        proc = run_main("run", "wgan_lsun", "--max-steps", "2", "--no-eval", "--data-root", str(lsun),
                        *sets({**over, "prepared": flag}))
        assert proc.returncode == 0, proc.stderr
        run = mlflow_client.get_run(proc.stdout.split()[-1])
        assert run.data.tags["suite.data_source"].startswith(source)
        assert mlflow_client.get_metric_history(run.info.run_id, "perf/data_wait")


def test_a_changed_source_is_refused_in_one_line(lsun, suite_home):
    api.prepare("lsun_bedroom", 16, lsun, workers=0, progress=False)
    image = _jpeg(np.random.default_rng(9))
    add = ("import lmdb, sys; env = lmdb.open(sys.argv[1], map_size=1 << 26); txn = env.begin(write=True); "
           "txn.put(b'f' * 40, sys.stdin.buffer.read()); txn.commit()")  # another process adds an image
    subprocess.run([sys.executable, "-c", add, str(lsun / "bedroom_train_lmdb")], input=image, check=True)
    proc = run_main("run", "wgan_lsun", "--max-steps", "1", "--no-eval", "--data-root", str(lsun),
                    *sets({"image_size": 16, "ngf": 4, "ndf": 4, "batch_size": 8, "n_extra_layers": 0}))
    assert_one_line_error(proc, "does not match dataset 'lsun_bedroom'", "source changed", "suite prepare lsun_bedroom",
                          "prepared=false")


def test_an_interrupted_prepare_resumes_where_it_stopped(lsun, monkeypatch):
    monkeypatch.setattr(prepared, "CHUNK", 8)
    loaded = data.load("lsun_bedroom", data_root=lsun, image_size=16, prepared=False)
    calls, crashed = [], []
    inner = loaded.train.__getitem__

    def counting(i):
        calls.append(i)
        if i == 20 and not crashed:
            crashed.append(i)
            raise OSError("the disk went away")  # a crash in the middle of the third chunk
        return inner(i)

    monkeypatch.setattr(type(loaded.train), "__getitem__", lambda self, i: counting(i))
    with pytest.raises(OSError, match="went away"):
        prepared.prepare("lsun_bedroom", 16, loaded, lsun, progress=False)
    path = prepared.file_for("lsun_bedroom", 16)
    assert not path.exists() and path.with_name(path.name + ".partial").exists()  # nothing half-written in place
    calls.clear()
    prepared.prepare("lsun_bedroom", 16, loaded, lsun, progress=False)
    assert min(calls) == 16 and len(calls) == 24  # the two finished chunks were kept
    ready = data.load("lsun_bedroom", data_root=lsun, image_size=16)
    monkeypatch.undo()
    fly = data.load("lsun_bedroom", data_root=lsun, image_size=16, prepared=False)
    assert all(torch.equal(ready.train[i], fly.train[i]) for i in range(40))


def test_what_cannot_be_prepared_says_why(suite_home):
    assert_one_line_error(run_main("prepare", "fashion_mnist"), "held in memory already")
    assert_one_line_error(run_main("prepare", "horse2zebra", "--data-root", str(suite_home / "none")), "not found")
