"""Verdicts on planted sets: what a person would conclude from sets whose truth is known.
Held-out images of two classes are collapsed but not memorized and cover two classes; training
images shifted by 3 px, rotated by 5 degrees or cropped by 14 % and scaled back are copies; honest
held-out images pass both checks.

    python -m pytest tests/test_verdicts.py -m slow
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from evaluation.evaluate import Context, Options
from suite import data

pytestmark = pytest.mark.slow  # the Fashion-MNIST classifier and five full evaluations of 2,000 samples

N = 2000


@pytest.fixture(scope="module")
def fashion():
    return data.load("fashion_mnist")


@pytest.fixture(scope="module")
def ctx():
    return Context("fashion_mnist", Options(n=N))


def shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    return torch.roll(x, (dy, dx), dims=(-2, -1))  # Fashion-MNIST's border is black: what wraps in is background


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1  # background stays black


def crop_rescale(x: torch.Tensor, px: int) -> torch.Tensor:
    side = x.shape[-1]
    return F.interpolate(x[..., px : side - px, px : side - px], size=(side, side), mode="bilinear",
                         align_corners=False, antialias=False).clamp(-1, 1)


def verdicts(ctx, x):
    result = ctx.evaluate(x, full=True)
    return result.checks["mode_collapse"], result.checks["memorization"]


def test_held_out_images_of_two_classes_are_collapsed_not_memorized(ctx, fashion):
    test = fashion.test
    two = test.x[(test.y == 1) | (test.y == 7)][:N]  # trousers and sneakers: held out, no copies
    collapse, memo = verdicts(ctx, two)
    assert collapse["flagged"] and collapse["modes_covered"] == 2, collapse
    assert not memo["flagged"], memo


def test_honest_held_out_images_pass_both_checks(ctx, fashion):
    collapse, memo = verdicts(ctx, fashion.test.x[:N])
    assert not collapse["flagged"] and collapse["modes_covered"] == 10
    assert not memo["flagged"], memo


@pytest.mark.parametrize("edit", ["shift3", "rotate5", "crop2"])
def test_edited_training_images_are_found_as_copies(ctx, fashion, edit):
    x = fashion.train.x[:N]
    edited = {"shift3": lambda: torch.cat([shift(x[: N // 2], 3, 0), shift(x[N // 2 :], 0, -3)]),
              "rotate5": lambda: torch.cat([rotate(x[: N // 2], 5), rotate(x[N // 2 :], -5)]),
              "crop2": lambda: crop_rescale(x, 2)}[edit]()
    _, memo = verdicts(ctx, edited)
    assert memo["flagged"], memo["edits"]
    # found: shifts ~0.9 of them, crops ~0.55, rotations ~0.08 (held-out images: 0.01 by construction)
    assert memo["edits"]["near_copy_share"] > {"shift3": 0.5, "crop2": 0.3, "rotate5": 0.05}[edit], memo["edits"]
