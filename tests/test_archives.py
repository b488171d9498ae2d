"""CIFAR-10 / CIFAR-100 and STL-10 from files written here in the official layouts: pixels and
labels as written, the python version's pickles read without running anything, one line when the
archive is absent, and a CIFAR-10 recipe training on them."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from suite import data
from suite.core.errors import DataError
from suite.data import archives
from tests.helpers import assert_one_line_error, run_main, sets

N = 8  # images per batch file


def images(rng, n, side=32):
    return rng.integers(0, 256, (n, 3, side, side), dtype=np.uint8)


def write_cifar(root, classes: int, version: str, seed: int = 0) -> dict:
    """The official layout of the binary or python version; returns what was written per split."""
    rng = np.random.default_rng(seed)
    if classes == 10:
        folder = root / (archives.CIFAR10_BINARY if version == "binary" else archives.CIFAR10_PYTHON)
        splits = archives.CIFAR10_SPLITS
    else:
        folder = root / (archives.CIFAR100_BINARY if version == "binary" else archives.CIFAR100_PYTHON)
        splits = archives.CIFAR100_SPLITS
    folder.mkdir(parents=True)
    written = {}
    for split, files in splits.items():
        xs, ys = [], []
        for name in files:
            x, y, coarse = images(rng, N), rng.integers(0, classes, N), rng.integers(0, 20, N)
            if version == "binary":
                head = [y[:, None]] if classes == 10 else [coarse[:, None], y[:, None]]
                rec = np.concatenate([h.astype(np.uint8) for h in head] + [x.reshape(N, -1)], 1)
                (folder / f"{name}.bin").write_bytes(rec.tobytes())
            else:
                key = b"labels" if classes == 10 else b"fine_labels"
                batch = {b"data": x.reshape(N, -1), key: [int(v) for v in y], b"batch_label": b"synthetic"}
                if classes == 100:
                    batch[b"coarse_labels"] = [int(v) for v in coarse]
                (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
            xs.append(x)
            ys.append(y)
        written[split] = (np.concatenate(xs), np.concatenate(ys))
    if classes == 100 and version == "python":
        (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}))
    return written


@pytest.mark.parametrize("classes,version", [(10, "binary"), (10, "python"), (100, "binary"), (100, "python")])
def test_cifar_pixels_and_labels_are_what_the_archive_holds(tmp_path, classes, version):
    written = write_cifar(tmp_path, classes, version)
    d = data.load(f"cifar{classes}", data_root=tmp_path)
    for split, src in (("train", d.train), ("test", d.test)):
        x, y = written[split]
        assert src.x.shape == (len(x), 3, 32, 32)
        assert torch.equal(src.x.add(1).mul(127.5).round().to(torch.uint8), torch.from_numpy(x))
        assert torch.equal(src.y, torch.from_numpy(y))
    assert len(d.meta["classes"]) == classes and d.meta["version"] == version
    if classes == 100 and version == "python":
        assert d.meta["classes"][3] == "c3"


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_in_a_cifar_batch_never_runs(tmp_path):
    write_cifar(tmp_path, 10, "python")
    marker = tmp_path / "pwned"
    evil = _Payload()
    evil.marker = marker
    target = tmp_path / archives.CIFAR10_PYTHON / "data_batch_3"
    target.write_bytes(pickle.dumps({b"data": evil, b"labels": [0]}, protocol=2))
    with pytest.raises(DataError) as e:
        data.load("cifar10", data_root=tmp_path)
    assert not marker.exists()
    assert "refused global" in str(e.value) and ("posix.system" in str(e.value) or "os.system" in str(e.value))
    assert str(target) in str(e.value) and "\n" not in str(e.value)


def test_a_truncated_binary_batch_is_one_line(tmp_path):
    write_cifar(tmp_path, 10, "binary")
    path = tmp_path / archives.CIFAR10_BINARY / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match="not a whole number of 3073-byte CIFAR records"):
        data.load("cifar10", data_root=tmp_path)


def test_stl10_reads_its_column_major_images(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / archives.STL10_BINARY
    folder.mkdir()
    split = {}
    for name, n in (("train", 6), ("test", 4), ("unlabeled", 5)):
        x = images(rng, n, 96)
        (folder / f"{name}_X.bin").write_bytes(x.transpose(0, 1, 3, 2).tobytes())  # each channel column-major
        if name != "unlabeled":
            (folder / f"{name}_y.bin").write_bytes((rng.integers(0, 10, n) + 1).astype(np.uint8).tobytes())
        split[name] = x
    d = data.load("stl10", data_root=tmp_path, image_size=96)
    assert len(d.train) == 11 and d.test.x.shape == (4, 3, 96, 96)
    as_u8 = lambda t: t.add(1).mul(127.5).round().to(torch.uint8)  # noqa: E731
    assert torch.equal(as_u8(d.train[0]), torch.from_numpy(split["train"][0]))
    assert torch.equal(as_u8(d.train[8]), torch.from_numpy(split["unlabeled"][2]))
    assert torch.equal(as_u8(d.test.x), torch.from_numpy(split["test"]))
    assert 0 <= int(d.test.y.min()) and int(d.test.y.max()) <= 9
    small = data.load("stl10", data_root=tmp_path, image_size=48)
    assert small.train[0].shape == (3, 48, 48) and small.test.x.shape == (4, 3, 48, 48)


def test_absent_archives_say_where_they_looked_and_how_to_get_them(suite_home, tmp_path):
    for recipe, needle in (("dcgan_cifar10", "cifar-10-batches-bin"), ("wgan_cifar10", "cifar-10-batches-py")):
        proc = run_main("run", recipe, "--data-root", str(tmp_path / "empty"))
        assert_one_line_error(proc, "dataset 'cifar10' not found", needle, str(tmp_path / "empty"), "--download")


def test_dcgan_cifar10_trains_on_an_archive_made_here(suite_home, tmp_path, mlflow_client):
    write_cifar(tmp_path, 10, "binary")
    over = {"ngf": 8, "ndf": 8, "batch_size": 16, "n_sample": 16}
    proc = run_main("run", "dcgan_cifar10", "--max-steps", "2", "--no-eval", "--data-root", str(tmp_path), *sets(over),
                    env={"SUITE_HOME": str(suite_home)})
    assert proc.returncode == 0, proc.stderr
    run = mlflow_client.get_run(proc.stdout.split()[-1])
    assert run.info.status == "FINISHED" and run.data.params["image_size"] == "32"
    assert run.data.tags["suite.dataset"] == "cifar10" and run.data.tags["suite.steps"] == "2"
