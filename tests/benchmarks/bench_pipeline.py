"""MLflow logging cost and data-pipeline throughput, each against a baseline in the same run."""

from __future__ import annotations

import io

import numpy as np
import pytest

from suite import run_setup
from suite.core.tracking import Tracker
from tests.benchmarks.conftest import EXTRA, check, goal, record

goal("log_step", "max", 0.01, "logging one step's metrics (training thread) / one DCGAN 32x32 step")
goal("log_10k", "max", 0.25, "10,000 metric values stored: suite tracker / one MLflow log_batch per step")
goal("loader_mem", "max", 0.05, "in-memory batch (Fashion 32x32, 128) / DCGAN training step")
goal("loader_files", "max", 1.0, "JPEG folder batch (64x64, 64, 2 workers) / DCGAN 64x64 training step")

VALUES = {"loss/d": 0.7, "loss/g": 1.3, "d_real": 0.6, "d_fake": 0.3, "d_fake_gstep": 0.35}


@pytest.fixture(scope="module")
def dcgan_fashion():
    cfg = run_setup.resolve_config("dcgan_fashion", {})
    p = run_setup.prepare("dcgan_fashion", cfg)
    return run_setup.build_trainer(p), run_setup.make_stream(p)


def test_dcgan_step(benchmark, dcgan_fashion):
    trainer, stream = dcgan_fashion
    trainer.train_step(stream)
    benchmark.pedantic(lambda: trainer.train_step(stream), rounds=10, iterations=1)
    record("log_step", "baseline", benchmark)
    record("loader_mem", "baseline", benchmark)


def test_log_one_step(benchmark, suite_home):
    tracker = Tracker.create("bench_log", "bench", {}, {}, {})
    tracker.start_writer(wait=True)
    step = iter(range(10**9))
    benchmark.pedantic(lambda: tracker.log_metrics(next(step), VALUES), rounds=200, iterations=10)
    record("log_step", "ours", benchmark)
    tracker.finish()
    check("log_step")


def test_log_10k_suite(benchmark, suite_home):
    def log_all(tracker):
        for s in range(2000):
            tracker.log_metrics(s, VALUES)
            if s % 25 == 24:
                tracker.flush()
        tracker.flush(wait=True)

    def setup():
        t = Tracker.create("bench_log", "bench", {}, {}, {})
        t.start_writer(wait=True)  # the writer process is up (in training it starts with the run)
        return (t,), {}

    benchmark.pedantic(log_all, setup=setup, rounds=3, iterations=1)
    record("log_10k", "ours", benchmark)
    EXTRA["log_10k"] = f"{benchmark.stats.stats.min:.2f} s for 10,000 values"


def test_log_10k_per_step_batches(benchmark, suite_home):
    """The plain MLflow way: one synchronous log_batch per training step."""
    from mlflow.entities import Metric

    def log_all(tracker):
        for s in range(2000):
            tracker.client.log_batch(tracker.run_id, metrics=[Metric(k, v, 0, s) for k, v in VALUES.items()])

    benchmark.pedantic(log_all, setup=lambda: ((Tracker.create("bench_log", "b", {}, {}, {}),), {}), rounds=1,
                       iterations=1)
    record("log_10k", "baseline", benchmark)
    check("log_10k")


def test_loader_in_memory(benchmark, dcgan_fashion):
    _, stream = dcgan_fashion
    benchmark.pedantic(stream, rounds=50, iterations=5)
    record("loader_mem", "ours", benchmark)
    check("loader_mem")


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("lsun_like")
    folder = root / "bedroom"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(640):  # LSUN-like: larger than 64 px, resized and centre-cropped by the loader
        arr = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=90)
        (folder / f"{i:04d}.jpg").write_bytes(buf.getvalue())
    return root


def test_dcgan64_step(benchmark, jpeg_folder):
    cfg = run_setup.resolve_config("dcgan_lsun", {"batch_size": 64, "num_workers": 2})
    p = run_setup.prepare("dcgan_lsun", cfg, data_root=jpeg_folder)
    trainer, stream = run_setup.build_trainer(p), run_setup.make_stream(p)
    trainer.train_step(stream)
    batches = [stream() for _ in range(3)]
    benchmark.pedantic(lambda: trainer.train_step(lambda: batches[0]), rounds=5, iterations=1)
    record("loader_files", "baseline", benchmark)


def test_loader_files(benchmark, jpeg_folder):
    cfg = run_setup.resolve_config("dcgan_lsun", {"batch_size": 64, "num_workers": 2})
    p = run_setup.prepare("dcgan_lsun", cfg, data_root=jpeg_folder)
    stream = run_setup.make_stream(p)
    stream()
    benchmark.pedantic(stream, rounds=40, iterations=1)
    record("loader_files", "ours", benchmark, stat="mean")
    check("loader_files")


goal("prepared", "min", 20.0, "speed-up of batches from the prepared file (read a batch at a time in the training "
                              "process) over decoding a 256 px WebP/JPEG LMDB with 2 DataLoader workers (64 px, batch 64)")


@pytest.fixture(scope="module")
def lsun_256(tmp_path_factory):
    """2,000 LSUN-sized images (256 px, half WebP, half JPEG) in an LMDB, and its prepared 64 px copy."""
    import lmdb
    from PIL import Image

    root = tmp_path_factory.mktemp("lsun256")
    env = lmdb.open(str(root / "bedroom_train_lmdb"), map_size=1 << 30)
    rng = np.random.default_rng(0)
    with env.begin(write=True) as txn:
        for i in range(2000):  # photo-like sizes: smooth content upsampled to 256 x 342 (20-40 kB each)
            small = Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8))
            buf = io.BytesIO()
            small.resize((342, 256), Image.BICUBIC).save(buf, format="WEBP" if i % 2 else "JPEG", quality=85)
            txn.put(f"{i:040x}".encode(), buf.getvalue())
    env.close()
    return root


def _lsun_stream(root, prepared: bool):
    cfg = run_setup.resolve_config("dcgan_lsun", {"batch_size": 64, "num_workers": 2, "prepared": prepared})
    return run_setup.make_stream(run_setup.prepare("dcgan_lsun", cfg, data_root=root))


def test_lsun_on_the_fly(benchmark, lsun_256, suite_home):
    stream = _lsun_stream(lsun_256, False)
    stream()
    benchmark.pedantic(stream, rounds=20, iterations=1)
    record("prepared", "baseline", benchmark, stat="mean")


def test_lsun_prepared(benchmark, lsun_256, suite_home):
    from suite import api

    api.prepare("lsun_bedroom", 64, lsun_256, workers=2, progress=False)
    stream = _lsun_stream(lsun_256, True)
    assert stream.src.__class__.__name__ == "ArrayImages"
    stream()
    benchmark.pedantic(stream, rounds=20, iterations=1)
    record("prepared", "ours", benchmark, stat="mean")
    check("prepared")
