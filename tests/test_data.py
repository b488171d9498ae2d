"""Dataset registry: offline data loads, missing data fails in one line, batches resume exactly."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from suite import data
from suite.core.errors import DatasetNotFound
from tests.helpers import TINY_DC, assert_one_line_error, run_main, sets


def test_mixtures_have_the_classic_modes_and_spread():
    ring = data.load("ring8")
    modes, std = ring.meta["modes"], ring.meta["std"]
    assert modes.shape == (8, 2) and torch.allclose(modes.norm(dim=1), torch.full((8,), 2.0))
    assert std == 0.02 and ring.shape == (2,) and len(ring.train) == 50_000
    x, y = ring.train.x, ring.train.y
    resid = x - modes[y]
    assert abs(resid.std().item() - 0.02) < 1e-3
    assert torch.bincount(y).min() > 50_000 / 8 * 0.9
    grid = data.load("grid25")
    assert grid.meta["modes"].shape == (25, 2) and grid.meta["std"] == 0.05
    assert set(grid.meta["modes"][:, 0].tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}


def test_digits_are_real_and_split():
    native = data.load("digits")  # 8x8 as shipped: no resize (which would clamp) between file and check
    assert native.train.x.min() == -1 and native.train.x.max() == 1  # 0..16 ink levels span [-1, 1]
    d = data.load("digits", image_size=32)
    assert d.train.x.shape == (1500, 1, 32, 32) and d.test.x.shape == (297, 1, 32, 32)
    assert sorted(torch.unique(d.train.y).tolist()) == list(range(10))


def test_fashion_mnist_loads_from_the_debian_package():
    d = data.load("fashion_mnist")
    assert d.train.x.shape == (60_000, 1, 28, 28) and d.test.x.shape == (10_000, 1, 28, 28)
    assert d.train.x.min() == -1 and d.train.x.max() == 1
    assert torch.bincount(d.train.y).tolist() == [6000] * 10
    d32 = data.load("fashion_mnist", image_size=32)
    assert d32.train.x.shape[-2:] == (32, 32)


@pytest.mark.slow  # loads and restyles both halves (~7 s): keeps the default tier under 5 minutes
def test_fashion_unpaired_halves_are_disjoint_and_b_is_an_invertible_restyle():
    d = data.load("fashion_unpaired")
    a, b = d.train.a, d.train.b
    assert len(a) == len(b) == 30_000
    full = data.load("fashion_mnist").train.x
    # every B image is the restyle of an A-less image: undoing it gives a real training image
    recovered = data.unrestyle(b.x[:50])
    flat_full = full.flatten(1)
    for img in recovered:
        dist = (flat_full - img.flatten()).abs().max(dim=1).values
        assert dist.min() < 0.02
    # no image appears in both domains
    ka = {hash(t.numpy().tobytes()) for t in a.x[:2000]}
    kb = {hash(t.numpy().tobytes()) for t in data.unrestyle(b.x).mul(127.5).add(127.5).round().div(127.5).sub(1)}
    assert not ka & kb
    x = torch.linspace(-1, 1, 101)
    assert torch.allclose(data.unrestyle(data.restyle(x)), x, atol=1e-5)


def test_missing_dataset_names_where_it_looked_and_how_to_get_it(suite_home, tmp_path):
    with pytest.raises(DatasetNotFound) as e:
        data.load("lsun_bedroom", data_root=tmp_path / "empty")
    msg = str(e.value)
    assert "lsun_bedroom" in msg and str(tmp_path / "empty") in msg and "--data-root" in msg
    assert "SUITE_DATA_ROOT" in msg and "\n" not in msg


def test_run_wgan_lsun_without_lsun_fails_in_one_line_and_logs_nothing(suite_home, mlflow_client):
    proc = run_main("run", "wgan_lsun", env={"SUITE_HOME": str(suite_home), "HOME": str(suite_home.parent)})
    assert_one_line_error(proc, "lsun_bedroom", "not found", "--data-root")
    assert proc.returncode == 2
    assert mlflow_client.search_runs([e.experiment_id for e in mlflow_client.search_experiments()]) == []


def _jpeg(rng: np.random.Generator, size=80) -> bytes:
    from PIL import Image

    arr = (rng.random((size, size + 16, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def make_lsun_lmdb(root, n=40):
    import lmdb

    path = root / "bedroom_train_lmdb"
    path.mkdir(parents=True)
    env = lmdb.open(str(path), map_size=1 << 26)
    rng = np.random.default_rng(0)
    with env.begin(write=True) as txn:
        for i in range(n):
            txn.put(f"{i:040x}".encode(), _jpeg(rng))
    env.close()
    return path


def test_lsun_lmdb_made_here_trains_wgan_lsun(suite_home, tmp_path, mlflow_client):
    make_lsun_lmdb(tmp_path / "lsun")
    over = {"ngf": 4, "ndf": 4, "batch_size": 8, "critic_burst": 2, "num_workers": 0}
    proc = run_main("run", "wgan_lsun", "--max-steps", "3", "--data-root", str(tmp_path / "lsun"), *sets(over),
                   env={"SUITE_HOME": str(suite_home)})
    assert proc.returncode == 0, proc.stderr
    run = mlflow_client.get_run(proc.stdout.split()[-1])
    assert run.info.status == "FINISHED"
    assert run.data.params["image_size"] == "64" and run.data.params["n_extra_layers"] == "1"
    assert len(mlflow_client.get_metric_history(run.info.run_id, "wasserstein_estimate")) == 3


def test_lsun_image_folder_and_horse2zebra_folders(suite_home, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    (tmp_path / "lsun" / "bedroom").mkdir(parents=True)
    for i in range(6):
        Image.open(io.BytesIO(_jpeg(rng))).save(tmp_path / "lsun" / "bedroom" / f"{i}.jpg")
    d = data.load("lsun_bedroom", data_root=tmp_path / "lsun", image_size=64)
    assert len(d.train) == 6 and d.train[0].shape == (3, 64, 64)
    for part in ("trainA", "trainB", "testA", "testB"):
        (tmp_path / "h2z" / "horse2zebra" / part).mkdir(parents=True)
        for i in range(3):
            Image.open(io.BytesIO(_jpeg(rng, 40))).save(tmp_path / "h2z" / "horse2zebra" / part / f"{i}.png")
    h = data.load("horse2zebra", data_root=tmp_path / "h2z", image_size=32, load_size=36)
    a, b = h.train[(0, 2)]
    assert a.shape == b.shape == (3, 32, 32) and a.min() >= -1 and a.max() <= 1


def test_batch_stream_resumes_mid_epoch_with_the_same_batches():
    d = data.load("digits", image_size=16)
    s1 = data.BatchStream(d, 64, seed=3, device="cpu")
    first = [s1() for _ in range(30)]  # crosses an epoch boundary (23 batches per epoch)
    s2 = data.BatchStream(d, 64, seed=3, device="cpu")
    for _ in range(10):
        s2()
    state = s2.state_dict()
    s3 = data.BatchStream(d, 64, seed=3, device="cpu")
    s3.load_state_dict(state)
    rest = [s3() for _ in range(20)]
    assert all(torch.equal(a, b) for a, b in zip(first[10:], rest))
    # one epoch visits every example once (drop_last aside)
    s4 = data.BatchStream(d, 100, seed=0, device="cpu")
    seen = torch.cat([s4() for _ in range(15)])
    assert len(torch.unique(seen.flatten(1), dim=0)) == 1500
    assert s4.epochs_done == 1


def test_unpaired_stream_augments_deterministically():
    d = data.load("fashion_unpaired", image_size=32, load_size=36, flip=True, subset=64)
    s = data.BatchStream(d, 8, seed=0, device="cpu", image_size=32, flip=True)
    a, b = s()
    assert a.shape == b.shape == (8, 1, 32, 32)
    s2 = data.BatchStream(d, 8, seed=0, device="cpu", image_size=32, flip=True)
    a2, b2 = s2()
    assert torch.equal(a, a2) and torch.equal(b, b2)


def test_cli_trains_on_digits_with_tiny_networks(suite_home):
    proc = run_main("run", "dcgan_digits", "--max-steps", "4", "--no-eval", *sets(TINY_DC),
                    env={"SUITE_HOME": str(suite_home)})
    assert proc.returncode == 0, proc.stderr
