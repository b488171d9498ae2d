"""Copies that survive small edits: for each image, the nearest training image under the edits a
generator can make or a curator would miss, in pixel space.

Written here because no peer (torch-fidelity, torchmetrics, dgm-eval) has such a check: a plain
nearest-neighbour search calls a one-pixel shift or a mirror image of a training image "new".

- Brightness and contrast: images are standardised (zero mean, unit norm) and softened by a
  one-pixel blur before comparing, so a*x + b matches x, and resampling or mild noise move an
  image only a little.
- Mirroring, crop-and-rescale and small rotations: the query is searched as it is, mirrored,
  zoomed by each factor of `scales` (a grid of 7 % steps, ±16 %: a 2-pixel crop of each side at
  28 px is 14 %) and rotated by each angle of `angles` (±3 and ±6 degrees); every view of the query
  is searched as a whole, so no size or angle is special.
- Shifts of up to 3 pixels of 28 (`shift` is a share of the side, at least one pixel): compared
  on the interior (that border left out), every offset of the query's window against the training image's centre window, so the
  way a shifted image was filled at its edge does not matter.
- Search: for each zoom the `candidates` nearest training images by the magnitude of their low
  2D Fourier frequencies (unchanged by a shift or a mirror; found exactly by `dot_search`, which
  skips the training images that cannot be among them), then the exact windowed distance, the
  query as it is and mirrored.
Held-out real images go through the same search, so the near-copy threshold (their 1 % quantile)
and with it the false-positive rate stay calibrated.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from evaluation.defaults import DEFAULTS
from evaluation.dot_search import DotIndex
from evaluation.memorization import copy_stats

EDIT_KINDS = ("none", "shift", "mirror", "rescale", "rotate")  # "none": an exact, re-lit or noised copy


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Rows -> zero mean, unit norm (brightness and contrast no longer count)."""
    x = x - x.mean(-1, keepdim=True)
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-8)


def spectrum(x: torch.Tensor, freqs: int = 7) -> torch.Tensor:
    """|2D FFT| at the lowest frequencies of a standardised image: a shift changes only phases,
    and summing the (u, v) and (-u, v) magnitudes makes a mirror image look the same too."""
    z = standardise(x.float().flatten(1)).view_as(x)
    mag = torch.fft.fft2(z).abs()
    up, down = list(range(freqs)), [0] + list(range(-1, -freqs, -1))
    return standardise((mag[..., up, :freqs] + mag[..., down, :freqs]).flatten(1))


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate about the centre, keeping the side (the border replicated into the corners)."""
    if not degrees:
        return x
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], dtype=x.dtype)
    # one image's grid, shared by all (a grid per image was 6x the sampling's own time)
    grid = F.affine_grid(theta.unsqueeze(0), [1, *x.shape[1:]], align_corners=False).expand(len(x), -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def zoom(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Zoom about the centre, keeping the side: in (scale > 1) crops, out pads with the border."""
    side = x.shape[-1]
    new = max(2, round(side * scale))
    if new == side:
        return x
    y = F.interpolate(x, size=(new, new), mode="bilinear", align_corners=False)
    if new > side:
        o = (new - side) // 2
        return y[..., o : o + side, o : o + side]
    lo = (side - new) // 2
    return F.pad(y, (lo, side - new - lo, lo, side - new - lo), mode="replicate")


def blur_matrix(size: int, sigma: float = 0.8, radius: int = 2) -> torch.Tensor:
    """size x size: a 1-D Gaussian blur with the border replicated, as one matrix."""
    m = torch.zeros(size, size)
    taps = torch.exp(-torch.arange(-radius, radius + 1).float() ** 2 / (2 * sigma**2))
    for i in range(size):
        for t, w in zip(range(-radius, radius + 1), taps / taps.sum()):
            m[i, min(max(i + t, 0), size - 1)] += w
    return m


def soften(x: torch.Tensor, sigma: float = 0.8) -> torch.Tensor:
    """A Gaussian blur of about a pixel: resampling an image (crop-and-rescale) sharpens or blurs
    edges by that much, which must not count as a difference. Two small matrix products (a
    depthwise convolution is ~20x slower on the CPU)."""
    rows, cols = blur_matrix(x.shape[-2], sigma), blur_matrix(x.shape[-1], sigma)
    return rows @ x @ cols.T


def window_sums(x: torch.Tensor, side_h: int, side_w: int) -> torch.Tensor:
    """Sum of every side_h x side_w window (stride 1), from an integral image in float64: the
    difference of large running sums would lose a near-constant window's variance in float32."""
    ii = F.pad(x.double(), (1, 0, 1, 0)).cumsum(-2).cumsum(-1)
    return ii[..., side_h:, side_w:] - ii[..., :-side_h, side_w:] - ii[..., side_h:, :-side_w] + ii[..., :-side_h, :-side_w]


def window_cosines(x: torch.Tensor, centres: torch.Tensor, shift: int) -> torch.Tensor:
    """Cosine between every interior window of each image (B x C x H x W, windows of side H - 2s
    at the (2s+1)^2 offsets, row-major; the centre one, no shift, is offset (2s+1)^2 // 2) and
    each of its own candidates (B x m x C x h' x w', standardised): B x (2s+1)^2 x m. One grouped
    convolution, an image per group (3-5x faster on the CPU than unfolding the windows for a
    batched matrix product). A candidate has zero mean, so only the window's centred norm is
    needed, from two window sums instead of standardising every window."""
    b, c, h, w = x.shape
    m, side_h, side_w = centres.shape[1], h - 2 * shift, w - 2 * shift
    x = x - x.mean((1, 2, 3), keepdim=True)  # no change in exact arithmetic; keeps a flat image's few digits
    dots = F.conv2d(x.reshape(1, b * c, h, w), centres.reshape(b * m, c, side_h, side_w), groups=b)
    n = c * side_h * side_w
    mean = window_sums(x, side_h, side_w).sum(1) / n  # B x (2s+1) x (2s+1)
    sq = window_sums(x * x, side_h, side_w).sum(1) / n
    norm = ((sq - mean * mean).clamp(min=0) * n).sqrt().clamp(min=1e-8).float().flatten(1)
    return dots.view(b, m, -1).transpose(1, 2) / norm.unsqueeze(2)


class CopySearch:
    """The training side, prepared once: centre windows and spectra of every training image."""

    def __init__(self, train: torch.Tensor, shift: float = DEFAULTS["copy_shift"],
                 scales: tuple[float, ...] = DEFAULTS["copy_scales"], angles: tuple[float, ...] = DEFAULTS["copy_angles"],
                 candidates: int = DEFAULTS["copy_candidates"]):
        train = soften(train.float())
        # shifts up to `shift` of the side, at least one pixel (2 px at 28, 1 at 8)
        self.shift = max(1, round(shift * min(train.shape[-2:])))
        self.scales, self.k = tuple(scales), candidates
        # every zoom unrotated, every rotation unzoomed: each edit's grid, not their product
        self.views = [(scale, 0.0) for scale in self.scales] + [(1.0, a) for a in angles if a]
        shift = self.shift
        h, w = train.shape[-2:]
        centre = standardise(train[..., shift : h - shift, shift : w - shift].flatten(1))
        # each centre window, then each mirrored: candidate i's mirror image is row i + N
        self.centre = torch.cat([centre, centre.view(len(train), -1, h - 2 * shift, w - 2 * shift).flip(-1).flatten(1)])
        self.spectra = DotIndex(spectrum(train))  # exact nearest spectra, far pairs pruned
        self.groups = [(view, mirror) for view in self.views for mirror in (False, True)]  # ((zoom, angle), mirror)

    def kind(self, group: int, offset: int) -> str:
        (scale, angle), mirror = self.groups[group]
        centre = (2 * self.shift + 1) ** 2 // 2
        if mirror:
            return "mirror"
        return "rotate" if angle else "rescale" if scale != 1.0 else "shift" if offset != centre else "none"

    def __call__(self, images: torch.Tensor, chunk: int = 1024) -> dict[str, torch.Tensor]:
        """distance (N,) to the nearest training image under the best edit, that image's index,
        and the edit: `group` (index into self.groups) and window `offset`."""
        images = soften(images.float())
        n, k = len(images), min(self.k, self.spectra.n)
        best = torch.full((n,), -2.0)
        index, group, offset = (torch.zeros(n, dtype=torch.long) for _ in range(3))
        side = 2 * self.shift + 1
        unmirror = torch.arange(side * side).view(side, side).flip(1).flatten()  # mirrored (dy, dx) = (dy, 2s - dx)
        window = (-1, 2 * k, *images.shape[1:-2], images.shape[-2] - 2 * self.shift, images.shape[-1] - 2 * self.shift)
        gathered = torch.empty(min(n, chunk) * 2 * k, self.centre.shape[1])  # reused: a fresh one per chunk is 3x slower
        for view in self.views:
            scale, angle = view
            zoomed = rotate(zoom(images, scale), angle)
            cands = self.spectra.top_k(spectrum(zoomed), k)  # blind to mirroring: serves both
            for s in range(0, n, chunk):
                mine = cands[s : s + chunk]
                # mirroring the candidates instead of the query: one pass over the query's windows
                pick = torch.cat([mine, mine + self.spectra.n], 1).flatten()
                centres = torch.index_select(self.centre, 0, pick, out=gathered[: len(pick)]).view(window)
                cos = window_cosines(zoomed[s : s + chunk], centres, self.shift)
                for mirror, half in ((False, cos[..., :k]), (True, cos[..., k:])):  # B x S x k each
                    value, flat = half.flatten(1).max(1)
                    better = value > best[s : s + chunk]
                    rows = torch.arange(s, s + len(value))[better]
                    best[rows] = value[better]
                    index[rows] = torch.gather(mine, 1, (flat % k).unsqueeze(1))[better, 0]
                    at = flat // k
                    group[rows], offset[rows] = self.groups.index((view, mirror)), (unmirror[at] if mirror else at)[better]
        # unit vectors: |a - b|^2 = 2 - 2 cos
        return {"distance": (2 - 2 * best).clamp(min=0).sqrt(), "index": index, "group": group, "offset": offset}


def copy_shares(search: CopySearch, found: dict[str, torch.Tensor], heldout: torch.Tensor,
                q: float = DEFAULTS["near_copy_quantile"]) -> dict:
    """Near copies under edits: closer to the training set than the q-quantile of held-out real
    images searched the same way; their share of all samples, in all and by the edit that matched."""
    plain = copy_stats(found["distance"], heldout, q)  # the same threshold rule as the plain search
    threshold = plain["near_copy_threshold"]
    near = (found["distance"] <= threshold).tolist()
    kinds = [search.kind(int(g), int(o)) for g, o in zip(found["group"], found["offset"])]
    return {
        "near_copy_share": plain["near_copy_share"],
        "near_copy_threshold": threshold,
        "by_edit": {kind: sum(1 for hit, k in zip(near, kinds) if hit and k == kind) / len(near) for kind in EDIT_KINDS},
    }
