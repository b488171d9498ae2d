"""Feature extractors, a registry keyed by name (as torch-fidelity's):

- `inception`: the standard FID Inception-v3 (torch-fidelity's network, the one torchmetrics
  wraps) with its weights read from a local file, so numbers compare with published FIDs;
- `lenet`: the suite's own classifier of the evaluated dataset (evaluation/classifier.py);
- `pixels`: flattened images at the dataset's native resolution (memorization checks);
- `points`: 2D mixture samples as they are.

Every extractor maps samples in data space ([-1, 1] images, or points) to a dict with
`features` (N x D) and, where it has them, class `logits`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F

from evaluation import classifier
from suite import data
from suite.core import checkpoint, paths
from suite.core.errors import ConfigError, DataError, PluginError
from suite.core.registration import check_name, origin

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
# The official file's full SHA-256 (its name carries the first 8 digits, torch.hub's convention;
# a prefix alone is forged in minutes). The same file serves pytorch-fid and torch-fidelity.
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"


@dataclass
class Extractor:
    name: str  # as it appears in metric names
    weights_hash: str  # part of every statistics cache key
    fn: Callable[[torch.Tensor], dict]
    size: int | None = None  # image side the extractor is fed (None: as given)
    has_logits: bool = False
    batch_size: int = 500
    device: str = "cpu"

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, list] = {}
        with torch.no_grad():
            for i in range(0, len(x), self.batch_size):
                chunk = x[i : i + self.batch_size]
                if self.size is not None:
                    chunk = prepare_images(chunk, self.size)
                for k, v in self.fn(chunk.to(self.device)).items():
                    out.setdefault(k, []).append(v.float().cpu())
        return {k: torch.cat(v) for k, v in out.items()}


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Generated images are judged as 8-bit images, as real ones are stored."""
    return x.clamp(-1, 1).add(1).mul(127.5).round().div(127.5).sub(1)


def prepare_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Quantize to 8 bits and resize to the extractor's side (antialiased when shrinking)."""
    x = quantize(x.float())
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < x.shape[-1])
    return x


@dataclass(frozen=True)
class Registered:
    build: Callable  # (dataset=, device=, **options) -> Extractor, or an nn.Module mapping images to vectors
    size: int | None = None  # the side images are resized to for a module (None: the dataset's own)
    origin: dict = field(default_factory=dict)


EXTRACTORS: dict[str, Registered] = {}


def register_extractor(name: str, build: Callable, size: int | None = None) -> None:
    """The registration door for feature extractors, built-in or plugin. `build(dataset=...,
    device=..., **options)` returns an Extractor, or any nn.Module that maps a batch of images in
    [-1, 1] (N x C x H x W) to vectors (N x D) or to a dict with `features` (and `logits`)."""
    check_name("extractor", name, EXTRACTORS)
    if not callable(build):
        raise PluginError(f"extractor '{name}': register a function that builds it, got {type(build).__name__}")
    EXTRACTORS[name] = Registered(build, size, origin())


def _from_module(name: str, module: torch.nn.Module, size: int | None, device: str) -> Extractor:
    """A user's network as an extractor: its weights' hash keys the statistics cache."""
    module = module.to(device).eval()
    digest = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        digest.update(key.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())

    def fn(x):
        out = module(x)
        out = out if isinstance(out, dict) else {"features": out}
        if not torch.is_tensor(out.get("features")) or out["features"].dim() < 2 or len(out["features"]) != len(x):
            raise DataError(f"extractor '{name}' must map N images to N feature vectors")
        return {**out, "features": out["features"].flatten(1)}

    return Extractor(name, digest.hexdigest()[:16], fn, size=size, device=device)


def get(name: str, dataset: str, **options) -> Extractor:
    if name not in EXTRACTORS:
        raise ConfigError(f"unknown feature extractor '{name}'; known: {', '.join(sorted(EXTRACTORS))}")
    entry = EXTRACTORS[name]
    try:
        built = entry.build(dataset=dataset, **options)
    except (ConfigError, DataError):
        raise
    except Exception as e:  # noqa: BLE001 - a plugin's builder failing: one line, with its last words
        if not entry.origin:
            raise
        raise PluginError(f"extractor '{name}' (plugin {entry.origin['plugin']}) failed to build: "
                          f"{type(e).__name__}: {e}") from None
    if isinstance(built, Extractor):
        return built
    if isinstance(built, torch.nn.Module):
        return _from_module(name, built, entry.size or data.get_spec(dataset).native_size or None,
                            options.get("device", "cpu"))
    raise PluginError(f"extractor '{name}' built a {type(built).__name__}: expected an nn.Module or an Extractor")


def default_for(dataset: str) -> str:
    spec = data.get_spec(dataset)
    if spec.kind == "points":
        return "points"
    if spec.reference in classifier.SUPPORTED:
        return "lenet"
    return "inception"


def _points(dataset: str, **_) -> Extractor:
    return Extractor("points", "identity", lambda x: {"features": x.flatten(1)})


def _pixels(dataset: str, **_) -> Extractor:
    size = data.get_spec(dataset).native_size
    return Extractor("pixels", f"native{size}", lambda x: {"features": x.flatten(1)}, size=size)


def _lenet(dataset: str, device: str = "cpu", **_) -> Extractor:
    model, meta = classifier.load_or_train(data.get_spec(dataset).reference)
    model = model.to(device)

    def fn(x):
        f, logits = model(x)
        return {"features": f, "logits": logits}

    return Extractor("lenet", meta["weights_hash"], fn, size=meta["size"], has_logits=True, device=device)


def inception_weights_path(path: str | os.PathLike | None = None) -> Path:
    candidates = [path, os.environ.get("SUITE_INCEPTION_WEIGHTS")]
    candidates.append(paths.cache_dir("weights") / INCEPTION_FILE)
    for c in candidates:
        if c and Path(c).expanduser().is_file():
            return Path(c).expanduser()
    raise ConfigError(
        f"Inception-v3 FID weights not found: pass --inception-weights PATH or set SUITE_INCEPTION_WEIGHTS "
        f"to {INCEPTION_FILE} (download it from {INCEPTION_URL}); offline, use the domain extractor (--extractor lenet)")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _inception(dataset: str, device: str = "cpu", inception_weights=None, **_) -> Extractor:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3  # heavy optional


    path = inception_weights_path(inception_weights)
    digest = sha256(path)
    official = digest == INCEPTION_SHA256
    if not official and os.environ.get("SUITE_ALLOW_UNVERIFIED_INCEPTION") != "1":
        raise ConfigError(f"{path} is not the FID Inception-v3 weights file (sha256 {digest[:16]}..., expected "
                          f"{INCEPTION_SHA256[:16]}...); get {INCEPTION_URL}")
    # Never unpickled, not even the official file: tensors only (weights_only=True), handed to
    # torch-fidelity's standard network through a file that holds nothing else.
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a refused pickle, a corrupt or foreign file
        why = "holds Python objects besides tensors; refused" if checkpoint.refused_pickle(e) else "is unreadable"
        raise ConfigError(f"Inception weights {path} {why} (loaded with weights_only=True)") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConfigError(f"Inception weights {path} do not hold a state dict of tensors")
    with tempfile.TemporaryDirectory() as tmp:
        safe = Path(tmp) / "inception.pth"
        torch.save(dict(state), safe)
        try:
            net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                              feature_extractor_weights_path=str(safe))
        except RuntimeError as e:  # keys or shapes of another network
            raise ConfigError(f"Inception weights {path} do not fit the FID Inception-v3: "
                              f"{str(e).splitlines()[0][:160]}") from None
    name = "inception" if official else "inception-unverified"  # other weights are never called "inception"
    net = net.to(device)

    def fn(x):
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if x.shape[1] != 3:
            raise DataError(f"Inception needs 1- or 3-channel images, got {x.shape[1]} channels")
        u8 = x.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
        feats, logits = net(u8)
        return {"features": feats, "logits": logits}

    return Extractor(name, digest[:16], fn, size=None, has_logits=True, batch_size=100, device=device)


register_extractor("points", _points)
register_extractor("pixels", _pixels)
register_extractor("lenet", _lenet)
register_extractor("inception", _inception)
