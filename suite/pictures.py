"""What a run shows while it trains: the fixed-noise sample grid at every sample step and, for 2D
data, GAN Lab's view (D over the plane, the generator's pull on each point) and its animation.

    python -m suite run gan_ring8 --max-steps 3000    # samples/ and landscape/ in the run's artifacts
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from recipes.base import Trainer
from suite.core import images
from suite.core.rng import isolated_rng
from suite.core.tracking import Tracker
from suite.run_setup import Prepared

LANDSCAPE_GRID, LANDSCAPE_POINTS = 80, 400  # heat-map resolution; points and arrows drawn per frame


def log_samples(tracker: Tracker, p: Prepared, t: Trainer, step: int) -> None:
    """The fixed-noise grid (a scatter plot for 2D data, with its landscape frame)."""
    x = t.samples()
    if t.kind == "points":
        picture = images.scatter(x, p.loaded.meta.get("modes"), f"{p.recipe} step {step}")
        log_landscape(tracker, p, t, step, x)
    else:
        picture = images.grid(x, getattr(t, "grid_nrow", None))
    tracker.log_image(picture, f"samples/step_{step:06d}.png")


def log_landscape(tracker: Tracker, p: Prepared, trainer: Trainer, step: int, fakes: torch.Tensor) -> None:
    """2D data: the discriminator's output over the plane, real and generated points, the
    generator's gradient at each generated point (GAN Lab's view), one frame per sample step."""
    modes = p.loaded.meta.get("modes")
    extent = 1.25 * float(modes.abs().max()) + 0.5 if modes is not None else 1.1 * float(fakes.abs().max())
    axis = torch.linspace(-extent, extent, LANDSCAPE_GRID)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")  # row i: y = axis[i]; column j: x = axis[j]
    fakes = fakes[:LANDSCAPE_POINTS]
    with isolated_rng():
        view = trainer.discriminator_view(torch.stack([gx.flatten(), gy.flatten()], 1), fakes)
    if view is None:
        return
    surface, pull = view
    real = p.loaded.train.x[:LANDSCAPE_POINTS].numpy()
    picture = images.landscape(surface.view(LANDSCAPE_GRID, LANDSCAPE_GRID).numpy(), extent, real,
                               fakes.numpy(), pull.numpy(), None if modes is None else modes.numpy(),
                               f"{p.recipe} step {step}: D(x), generator gradient")
    tracker.log_image(picture, f"landscape/step_{step:06d}.png")


def log_animation(tracker: Tracker) -> None:
    """Every landscape frame of the run (a resumed run's earlier ones too) as one GIF."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = tracker.download("landscape", Path(tmp))
        files = sorted(folder.glob("step_*.png")) if folder else []
        if len(files) >= 2:
            gif = Path(tmp) / "animation.gif"
            gif.write_bytes(images.animation([images.load_png(f) for f in files]))
            tracker.log_artifact(gif, "landscape")
