"""Metrics agree with reference implementations and separate good samples from bad ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from evaluation import collapse, evaluate, features, fid, isc, kid, memorization, prdc, samples, stats
from evaluation.metrics import metric_name
from evaluation.neighbours import knn
from suite import data
from tests.helpers import run_main


def correlated(n, d, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(d, d, generator=g) / d**0.5
    return torch.randn(n, d, generator=g) @ basis + shift


# ----------------------------------------------------------------------------- FID


@pytest.mark.slow  # scipy's sqrtm of a 2048 x 2048 matrix: the singular-covariance case below stays fast
def test_frechet_distance_matches_scipy_sqrtm_on_2048d_statistics():
    from scipy import linalg

    f1 = correlated(4000, 2048, 0).relu()  # inception-like: non-negative, rank-deficient-ish
    f2 = correlated(4000, 2048, 1, shift=0.05).relu()
    mu1, s1 = fid.statistics(f1)
    mu2, s2 = fid.statistics(f2)
    ours = fid.frechet_distance(mu1, s1, mu2, s2)
    covmean = linalg.sqrtm(s1.numpy() @ s2.numpy())
    ref = float(((mu1 - mu2) ** 2).sum() + np.trace(s1.numpy()) + np.trace(s2.numpy()) - 2 * np.trace(covmean.real))
    assert abs(ours - ref) / abs(ref) <= 1e-6


def test_frechet_distance_with_a_singular_covariance_matches_sqrtm():
    from scipy import linalg

    f1, f2 = torch.randn(100, 300).double(), torch.randn(500, 300).double() + 0.1  # rank(S1) < d
    (m1, s1), (m2, s2) = fid.statistics(f1), fid.statistics(f2)
    covmean = linalg.sqrtm(s1.numpy() @ s2.numpy())
    ref = float(((m1 - m2) ** 2).sum() + s1.trace() + s2.trace() - 2 * np.trace(covmean.real))
    assert fid.frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero_and_matches_torchmetrics():
    from torchmetrics.image.fid import FrechetInceptionDistance

    a, b = correlated(3000, 64, 2), correlated(3000, 64, 3, shift=0.3)
    assert abs(fid.frechet_distance(*fid.statistics(a), *fid.statistics(a))) < 1e-8

    class Identity(torch.nn.Module):
        num_features = 64

        def forward(self, x):
            return x

    tm = FrechetInceptionDistance(feature=Identity())
    tm.update(a, real=True)
    tm.update(b, real=False)
    assert fid.frechet_distance(*fid.statistics(b), *fid.statistics(a)) == pytest.approx(float(tm.compute()), rel=1e-6)


@pytest.mark.parametrize("scale,shift", [(1.0, 0.0), (1.0, 0.125), (2**0.5, 0.0)])
def test_fid_infinity_removes_the_finite_sample_bias_on_gaussians(scale, shift):
    """N(shift, scale^2 I) against the exact statistics of N(0, I) in 64-d: the true FID is
    d*shift^2 + d*(scale - 1)^2. FID at 1,000 or 5,000 samples is biased upward (by ~1 and ~0.2);
    the extrapolation lands near the truth."""
    d = 64
    x = torch.randn(5000, d, generator=torch.Generator().manual_seed(0)) * scale + shift
    true = d * shift**2 + d * (scale - 1) ** 2
    mu, sigma = torch.zeros(d), torch.eye(d)
    fid_1k = fid.frechet_distance(*fid.statistics(x[:1000]), mu, sigma)
    fid_5k = fid.frechet_distance(*fid.statistics(x), mu, sigma)
    inf = fid.fid_infinity(x, mu, sigma)
    assert fid_1k - true > 0.8 and fid_5k - true > 0.15  # the bias FID_N carries
    assert abs(inf - true) < 0.1 + 0.01 * true
    assert abs(inf - true) < abs(fid_5k - true)


def test_kid_is_near_zero_for_one_distribution_and_positive_across_two():
    a1, b = correlated(2000, 32, 4), correlated(2000, 32, 5, shift=0.5)
    same, _ = kid.kid(a1, a1[torch.randperm(2000)], subsets=20, subset_size=500)
    diff, _ = kid.kid(a1, b, subsets=20, subset_size=500)
    assert abs(same) < 0.02 < diff


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fid_is_and_kid_equal_torch_fidelity_in_float32_and_float64(dtype):
    """The same features through torch-fidelity's own functions: FID, IS (mean and std of the
    10 splits, same shuffle) and KID (same subsets) agree to 1e-6 relative in either dtype."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric

    a, b = correlated(3000, 64, 1).to(dtype), correlated(2500, 64, 2, shift=0.4).to(dtype)
    ref = fid_statistics_to_metric(fid_features_to_statistics(a), fid_features_to_statistics(b), verbose=False)
    assert fid.frechet_distance(*fid.statistics(a), *fid.statistics(b)) == pytest.approx(ref["frechet_inception_distance"], rel=1e-6)
    logits = (torch.randn(3000, 10, generator=torch.Generator().manual_seed(5)) * 2).to(dtype)
    ref = isc_features_to_metric(logits, splits=10, shuffle=True, rng_seed=2020)
    mean, std = isc.inception_score(logits)
    assert mean == pytest.approx(ref["inception_score_mean"], rel=1e-6)
    assert std == pytest.approx(ref["inception_score_std"], rel=1e-6)
    # KID: ours computes in float64 whatever comes in, so it equals torch-fidelity run on the same
    # values in float64; torch-fidelity's own float32 run differs from both by its float32 rounding
    mean, std = kid.kid(a, b, subsets=20, subset_size=1000, seed=3)
    ref = kid_features_to_metric(a.double(), b.double(), kid_subsets=20, kid_subset_size=1000, rng_seed=3,
                                 verbose=False)
    assert mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-9)
    assert std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-9)
    ref = kid_features_to_metric(a, b, kid_subsets=20, kid_subset_size=1000, rng_seed=3, verbose=False)
    assert mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-6)
    assert std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-6 if dtype == torch.float64 else 1e-4)


def test_kid_refuses_fewer_samples_than_its_subset_size():
    with pytest.raises(ValueError, match="KID subsets of 1000"):
        kid.kid(torch.randn(600, 8), torch.randn(5000, 8), subset_size=1000)


def test_inception_score_bounds():
    assert isc.inception_score(torch.zeros(1000, 10))[0] == pytest.approx(1.0)
    confident = torch.nn.functional.one_hot(torch.arange(1000) % 10, 10).float() * 50
    assert 9 < isc.inception_score(confident)[0] <= 10.0  # 10 with perfectly balanced splits


# ----------------------------------------------------------------------------- k-NN, PRDC, MiFID


def test_chunked_knn_is_exact():
    q, r = torch.randn(700, 16), torch.randn(3000, 16)
    r[5] = q[3]  # an exact copy must come back at distance 0
    d, i = knn(q, r, 3, q_chunk=256, r_chunk=1000)
    full = torch.cdist(q.double(), r.double())
    ref_d, ref_i = full.topk(3, largest=False)
    assert torch.equal(i, ref_i) and torch.allclose(d.double(), ref_d, atol=1e-5)
    assert d[3, 0] == 0 and i[3, 0] == 5
    ds, is_ = knn(r, r, 2, exclude_self=True, q_chunk=500, r_chunk=700)
    assert not (is_ == torch.arange(3000).unsqueeze(1)).any()


def test_precision_recall_match_torch_fidelity_and_prdc_of_identical_sets():
    from torch_fidelity.metric_prc import prc_features_to_metric

    real, gen = torch.randn(1500, 8), torch.randn(1200, 8) * 1.3 + 0.2
    ours = prdc.prdc(gen, real, k=5)
    tf = prc_features_to_metric(gen, real, prc_neighborhood=5, prc_batch_size=10000, save_cpu_ram=False,
                                verbose=False)
    # equal up to a sample on a ball's boundary (torch-fidelity compares in float32)
    assert ours["precision"] == pytest.approx(tf["precision"], abs=1 / len(gen) + 1e-9)
    assert ours["recall"] == pytest.approx(tf["recall"], abs=1 / len(real) + 1e-9)
    twin = prdc.prdc(torch.randn(1500, 8), real, k=5)  # same distribution, other samples
    assert twin["density"] == pytest.approx(1.0, abs=0.1) and twin["coverage"] > 0.9
    far = prdc.prdc(real + 100, real, k=5)
    assert far["precision"] == far["density"] == far["coverage"] == 0.0


@pytest.mark.parametrize("case", ["random", "integer lattice (ties everywhere)", "copies and duplicates"])
def test_prdc_equals_the_reference_prdc_package(case):
    """Naeem et al.'s own code (`prdc.compute_prdc`), strict '<' ball tests included: on the
    lattice every distance is exact and ties are everywhere; copies put points on ball edges."""
    from prdc import compute_prdc

    g = torch.Generator().manual_seed(3)
    if case == "random":
        real, gen = torch.randn(1500, 8, generator=g), torch.randn(1200, 8, generator=g) * 1.3 + 0.2
    elif case.startswith("integer"):
        real, gen = torch.randint(0, 4, (900, 6), generator=g).double(), torch.randint(0, 4, (700, 6), generator=g).double()
    else:
        base = torch.randn(1000, 8, generator=g)
        real = torch.cat([base, base[:50]])  # duplicated training points
        gen = torch.cat([base[:400], base[:100], torch.randn(300, 8, generator=g)])  # exact copies, repeated
    ours = prdc.prdc(gen, real, k=5)
    ref = compute_prdc(real_features=real.double().numpy(), fake_features=gen.double().numpy(), nearest_k=5)
    assert ours == {k: float(v) for k, v in ref.items()}


def test_prdc_of_identical_sets_is_one_everywhere():
    real = torch.randn(800, 8, generator=torch.Generator().manual_seed(4))
    assert prdc.prdc(real, real, k=5) == {"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0}


def test_mifid_is_bai_et_al_and_equals_torchmetrics_public_api_with_generated_as_first_set():
    """Bai et al.'s (Kaggle) MiFID averages each *generated* sample's minimum cosine distance to
    the training set. torchmetrics' MemorizationInformedFrechetInceptionDistance averages over the
    set passed with real=True, so handing it the generated features as that set computes Bai et
    al.'s definition through the public update/compute API. The data puts the memorization
    distance under eps (most samples are lightly noised copies), so the penalty term is live."""
    from torchmetrics.image.mifid import MemorizationInformedFrechetInceptionDistance

    train = correlated(800, 16, 6).relu() + 0.05
    noise = torch.randn(500, 16, generator=torch.Generator().manual_seed(7)) * 0.01
    gen = torch.cat([train[:400] + noise[:400], correlated(100, 16, 8).relu() + 0.05])
    value = fid.frechet_distance(*fid.statistics(gen), *fid.statistics(train))
    ours = memorization.mifid(value, gen, train)

    tm = MemorizationInformedFrechetInceptionDistance(feature=torch.nn.Flatten(), cosine_distance_eps=0.1)
    tm.update(gen.double(), real=True)  # the averaged set: generated samples (Bai et al.)
    tm.update(train.double(), real=False)
    assert ours == pytest.approx(float(tm.compute()), rel=1e-6)
    assert ours > 5 * value  # the memorization term divided FID by a distance well under eps

    other = MemorizationInformedFrechetInceptionDistance(feature=torch.nn.Flatten(), cosine_distance_eps=0.1)
    other.update(train.double(), real=True)  # torchmetrics' orientation: averaged over training
    other.update(gen.double(), real=False)
    assert float(other.compute()) != pytest.approx(ours, rel=1e-3)  # a different number: hence the name


# ----------------------------------------------------------------------------- mode collapse


def test_ring8_perfect_sampler_covers_8_modes_and_one_mode_sampler_1():
    modes, std = data.mixture_modes("ring8")
    perfect = data.sample_mixture("ring8", 10_000, seed=5).x
    mc = collapse.mixture_modes(perfect, modes, std)
    assert (mc["modes_covered"], mc["modes_total"]) == (8, 8) and not mc["flagged"]
    assert mc["high_quality_share"] > 0.98 and mc["kl_to_uniform"] < 0.01
    one = modes[3] + std * torch.randn(10_000, 2)
    mc1 = collapse.mixture_modes(one, modes, std)
    assert mc1["modes_covered"] == 1 and mc1["flagged"] and mc1["kl_to_uniform"] == pytest.approx(np.log(8), rel=0.01)


@pytest.mark.slow  # several 5,000-sample evaluations: keeps the default tier under 5 minutes
def test_ring8_evaluation_through_the_context(suite_home):
    ctx = evaluate.Context("ring8")
    good = ctx.evaluate(data.sample_mixture("ring8", 5000, seed=9).x)
    modes, std = data.mixture_modes("ring8")
    bad = ctx.evaluate(modes[0] + std * torch.randn(5000, 2), full=False)  # the collapse check needs no more
    fid_name = metric_name("fid", 5000, "points", "ring8", "train")
    primary = metric_name("mode_quality", 5000, "points", "ring8")
    assert good.primary == primary and good.metrics[fid_name] < 0.01 < bad.metrics[fid_name]
    assert good.checks["mode_collapse"]["modes_covered"] == 8 and not good.checks["mode_collapse"]["flagged"]
    assert bad.checks["mode_collapse"]["modes_covered"] == 1 and bad.checks["mode_collapse"]["flagged"]
    # a smeared ring: a Gaussian fit sees nothing wrong, the toy's primary does
    g = torch.Generator().manual_seed(2)
    angle = torch.rand(5000, generator=g) * 2 * np.pi
    radius = 2 + 0.1 * torch.randn(5000, generator=g)
    smeared = ctx.evaluate(torch.stack([radius * angle.cos(), radius * angle.sin()], 1), full=False)
    assert smeared.metrics[fid_name] < 0.05
    assert good.metrics[primary] > 0.95 and smeared.metrics[primary] < 0.1 and bad.metrics[primary] < 0.15


# ----------------------------------------------------------------------------- Fashion-MNIST, end to end


@pytest.fixture(scope="module")
def fashion_ctx():
    return evaluate.Context.shared("fashion_mnist", evaluate.Options())  # the one `suite evaluate` reuses in-process


@pytest.fixture(scope="module")
def fashion():
    return data.load("fashion_mnist")


@pytest.mark.slow  # trains the Fashion-MNIST classifier (~45 s on 2 cores) once per session
def test_domain_classifier_is_accurate_and_cached(fashion_ctx):
    from evaluation import classifier

    _, meta = classifier.load_or_train("fashion_mnist")
    assert meta["test_accuracy"] >= 0.90
    assert fashion_ctx.extractor.name == "lenet" and fashion_ctx.extractor.weights_hash == meta["weights_hash"]


@pytest.mark.slow  # several 5,000-sample evaluations: keeps the default tier under 5 minutes
def test_fashion_heldout_beats_one_class_and_an_untrained_generator(fashion_ctx, fashion):
    from recipes import dcgan
    from recipes.base import DataInfo

    n = 5000
    heldout = fashion_ctx.evaluate(fashion.test.x[:n], full=False)
    one_class = fashion_ctx.evaluate(fashion.test.x[fashion.test.y == 7][:1000].repeat(5, 1, 1, 1), full=False)
    torch.manual_seed(0)
    g = dcgan.DCGANTrainer(dcgan.Config(image_size=32, ngf=32, ndf=32), DataInfo("f", "image", (1, 32, 32), 1, 1), "cpu")
    untrained = fashion_ctx.evaluate(g.generate(n, torch.Generator().manual_seed(0)), full=False)
    name = metric_name("fid", n, "lenet", "fashion_mnist", "train")
    f_held, f_one, f_untrained = heldout.metrics[name], one_class.metrics[name], untrained.metrics[name]
    assert f_held < 2 and f_one > 50 * f_held and f_untrained > 50 * f_held
    is_name = metric_name("is", n, "lenet", "fashion_mnist")
    assert heldout.metrics[is_name] > 7 > 1.5 > one_class.metrics[is_name]
    assert not heldout.checks["mode_collapse"]["flagged"] and heldout.checks["mode_collapse"]["modes_covered"] == 10
    assert one_class.checks["mode_collapse"]["flagged"] and one_class.checks["mode_collapse"]["modes_covered"] == 1


@pytest.mark.slow  # builds the held-out copy-search cache (~40 s): keeps the default tier under 5 minutes
def test_a_sampler_returning_training_images_is_flagged_as_memorizing(fashion_ctx, fashion):
    copies = fashion_ctx.evaluate(fashion.train.x[:1000])
    heldout = fashion_ctx.evaluate(fashion.test.x[:1000])
    mem_c, mem_h = copies.checks["memorization"], heldout.checks["memorization"]
    assert mem_c["flagged"] and mem_c["pixels"]["near_copy_share"] == 1.0 and mem_c["ct"] < -3
    assert not mem_h["flagged"] and mem_h["pixels"]["near_copy_share"] < 0.03 and abs(mem_h["ct"]) < 3
    assert mem_h["pixels"]["nn_ratio"] == pytest.approx(1.0, abs=0.05) and mem_c["pixels"]["nn_ratio"] == 0
    assert set(copies.figures) >= {"nn_grid", "modes"}
    assert copies.figures["nn_grid"].shape[1] > copies.figures["nn_grid"].shape[0] / 2  # sample, matched, 3 NN
    assert mem_c["edits"]["near_copy_share"] == 1.0 and mem_c["edits"]["by_edit"]["none"] == 1.0


def _shift(x, dy, dx):  # content moved, the edge filled with the background
    h = x.shape[-1]
    return torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)[..., 2 - dy : 2 - dy + h, 2 - dx : 2 - dx + h]


def _crop_rescale(x, side=26, at=1):
    crop = x[..., at : at + side, at : at + side]
    return torch.nn.functional.interpolate(crop, size=x.shape[-2:], mode="bilinear", align_corners=False).clamp(-1, 1)


EDITS = {  # edit -> (the edited training images, the kind the search should name)
    "shift 1 px": (lambda x: _shift(x, 1, 0), "shift"),
    "shift 2 px diagonally": (lambda x: _shift(x, -2, 1), "shift"),
    "mirror": (lambda x: x.flip(-1), "mirror"),
    "mirror and shift": (lambda x: _shift(x.flip(-1), 1, 1), "mirror"),
    "crop 26 of 28 and rescale": (_crop_rescale, "rescale"),
    "brighter, less contrast": (lambda x: (0.8 * x + 0.15).clamp(-1, 1), "none"),
    "mild noise": (lambda x: (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1),
                   "none"),
}


@pytest.fixture(scope="module")
def copy_search(fashion):
    from evaluation import copies

    search = copies.CopySearch(fashion.train.x)
    return search, search(fashion.test.x[:2000])["distance"]  # the held-out baseline: 2,000 test images


@pytest.mark.parametrize("edit", list(EDITS))
def test_edited_training_images_are_found_as_copies(copy_search, fashion, edit):
    """500 training images after one small edit: far more than the 5 % flag are near copies,
    matched under the edit that was made."""
    from evaluation import copies

    search, heldout = copy_search
    make, kind = EDITS[edit]
    src = fashion.train.x[torch.randperm(60_000, generator=torch.Generator().manual_seed(0))[:500]]
    found = search(make(src))
    shares = copies.copy_shares(search, found, heldout)
    assert shares["near_copy_share"] > 0.4, shares  # measured: 0.55 (crop-rescale) to 1.0
    assert shares["by_edit"][kind] > 0.8 * shares["near_copy_share"], shares


def test_held_out_images_are_not_found_as_copies(copy_search, fashion):
    """Other held-out images, searched the same way: at the 1 % quantile of the baseline's, about
    1 % of them fall under the threshold by chance, far below the 5 % flag."""
    from evaluation import copies

    search, heldout = copy_search
    shares = copies.copy_shares(search, search(fashion.test.x[5000:7000]), heldout)
    assert shares["near_copy_share"] < 0.025, shares



def _plain_top_k(queries, refs, k):
    """The definition: float64 scores of every pair, then a top-k."""
    scores = queries.double() @ refs.double().T
    return scores, scores.topk(k, dim=1).indices


@pytest.mark.parametrize("case", ["random unit rows", "near a 3-d subspace", "rows of any norm"])
def test_dot_index_top_k_is_the_plain_top_k(case):
    """The pruned search returns the k refs a top-k over every score returns: on random rows
    (nothing to prune; leaves, groups and the last group all partly filled: 5,003 refs), on rows
    near a low-dimensional subspace, where most leaves must be skipped, and on rows of unequal
    norms (the bound's |q|^2 + max |r|^2 term)."""
    from evaluation.dot_search import DotIndex

    g = torch.Generator().manual_seed(0)
    n_refs, dim = (5003, 49) if case == "random unit rows" else (20_000, 49)
    if case == "random unit rows":
        refs = torch.randn(n_refs, dim, generator=g)
        queries = torch.cat([refs[[0, 4999, 5002]] + 0.01 * torch.randn(3, dim, generator=g), torch.randn(1200, dim, generator=g)])
    else:
        basis = torch.randn(3, dim, generator=g)
        refs = torch.randn(n_refs, 3, generator=g) @ basis + 0.05 * torch.randn(n_refs, dim, generator=g)
        queries = torch.randn(1500, 3, generator=g) @ basis + 0.05 * torch.randn(1500, dim, generator=g)
    if case == "rows of any norm":
        refs = refs * torch.empty(n_refs, 1).uniform_(0.2, 3.0, generator=g)
        queries = queries * torch.empty(len(queries), 1).uniform_(0.2, 3.0, generator=g)
    else:
        refs, queries = torch.nn.functional.normalize(refs, dim=1), torch.nn.functional.normalize(queries, dim=1)
    index = DotIndex(refs, leaf=512)
    ours = index.top_k(queries, 16, chunk=1000)  # two chunks, the second partly filled
    scores, plain = _plain_top_k(queries, refs, 16)
    same = (ours.sort(1).values == plain.sort(1).values).all(1).float().mean()
    assert same > 0.999, same  # a float tie at the 16th place may differ
    # where the sets differ, only by a tie: the same scores, best first
    assert torch.allclose(scores.gather(1, ours), scores.gather(1, plain), atol=1e-6)
    if case == "random unit rows":
        assert ours[:3, 0].tolist() == [0, 4999, 5002]
    if case == "near a 3-d subspace":
        assert index.scored_share < 0.5, index.scored_share  # the pruning did happen (measured 0.03)


def test_dot_index_small_sets():
    """Fewer refs than k: all of them, best first; k larger than a leaf's groups (no threshold)."""
    from evaluation.dot_search import DotIndex

    g = torch.Generator().manual_seed(1)
    refs, queries = torch.randn(10, 5, generator=g), torch.randn(7, 5, generator=g)
    ours = DotIndex(refs).top_k(queries, 16)
    assert ours.shape == (7, 10)
    assert torch.equal(ours, _plain_top_k(queries, refs, 10)[1])
    refs = torch.randn(600, 5, generator=g)
    ours = DotIndex(refs, leaf=64).top_k(queries, 16)  # leaves of <= 64 refs: 4 groups each
    assert torch.equal(ours.sort(1).values, _plain_top_k(queries, refs, 16)[1].sort(1).values)
    assert DotIndex(refs).top_k(queries[:0], 3).shape == (0, 3)


def test_window_cosines_equal_standardising_every_window():
    """Cosines from one grouped convolution and window sums = standardising each shifted window of
    the query and taking its dot product with each candidate, for a plain and a near-constant image."""
    from evaluation import copies

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 12, 12, generator=g)
    x[1] = 0.7 + 1e-3 * x[1]  # near-constant: the variance lives in the 4th digit
    shift, side = 2, 8
    cands = copies.standardise(torch.randn(2, 3, side * side, generator=g)).view(2, 3, 1, side, side)
    ours = copies.window_cosines(x, cands, shift)  # 2 x 25 x 3
    for b in range(2):
        for o in range(25):
            dy, dx = divmod(o, 5)
            win = copies.standardise(x[b, :, dy : dy + side, dx : dx + side].double().flatten())
            expect = cands[b].double().flatten(1) @ win
            assert torch.allclose(ours[b, o].double(), expect, atol=2e-4), (b, o)

@pytest.mark.slow  # trains the Fashion-MNIST classifier (~45 s on 2 cores) once per session
def test_reference_statistics_are_cached_and_keyed_by_every_setting(fashion, tmp_path, monkeypatch):
    ext = features.get("lenet", "fashion_mnist")  # the classifier from the session's cache
    monkeypatch.setenv("SUITE_CACHE", str(tmp_path))  # statistics from none: the tiers' cache outlives a run
    calls = []
    fn = ext.fn
    ext.fn = lambda x: (calls.append(len(x)), fn(x))[1]
    first = stats.reference("fashion_mnist", 28, "test", ext, lambda: fashion, n=1000)

    def must_not_load():
        raise AssertionError("a cached reference must not load the dataset")

    n_calls = len(calls)
    again = stats.reference("fashion_mnist", 28, "test", ext, must_not_load, n=1000)
    assert again["cached"] and torch.equal(first["mu"], again["mu"]) and len(calls) == n_calls
    assert again["class_counts"].sum() == 1000
    other = stats.reference("fashion_mnist", 28, "test", ext, lambda: fashion, n=1200)  # another entry
    assert not other["cached"] and len(calls) > n_calls
    assert stats.cache_key("fashion_mnist", "test", ext, 1000, 28) != stats.cache_key("fashion_mnist", "test", ext,
                                                                                     1000, 32)


# ----------------------------------------------------------------------------- CLI


@pytest.mark.slow  # builds the fashion references and the memorization baselines (~35 s)
def test_evaluate_samples_json(tmp_path, suite_home, fashion):
    path = tmp_path / "s.npy"
    np.save(path, fashion.test.x[:2000, 0].add(1).mul(127.5).round().byte().numpy())  # N x H x W uint8
    proc = run_main("evaluate", "--samples", str(path), "--dataset", "fashion_mnist", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) >= {"metrics", "checks"}
    assert out["metrics"][metric_name("fid", 2000, "lenet", "fashion_mnist", "train")] < 5
    mc, mem = out["checks"]["mode_collapse"], out["checks"]["memorization"]
    assert mc["flagged"] is False and mc["modes_covered"] == 10 and mc["modes_total"] == 10
    assert mem["flagged"] is False


def test_evaluate_image_folder(tmp_path, suite_home, fashion):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    pixels = fashion.test.x[:300, 0].add(1).mul(127.5).round().byte()
    for i, img in enumerate(pixels.numpy()):
        Image.fromarray(img).save(folder / f"{i:04d}.png")
    x = samples.load_samples(folder)  # read in [-1, 1] by their mode: 8-bit grayscale, one channel
    assert x.shape == (300, 1, 28, 28) and x.dtype == torch.float32
    assert torch.equal(x.add(1).mul(127.5).round().byte()[:, 0], pixels)


# ----------------------------------------------------------------------------- Inception


def test_inception_without_weights_says_which_file_and_where(monkeypatch, suite_home):
    monkeypatch.delenv("SUITE_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(Exception) as e:
        features.get("inception", "celeba")
    assert features.INCEPTION_FILE in str(e.value) and "--inception-weights" in str(e.value)


def test_inception_weights_with_the_wrong_hash_are_refused(tmp_path, monkeypatch, suite_home):
    bad = tmp_path / "weights.pth"
    torch.save({"x": torch.zeros(3)}, bad)
    monkeypatch.delenv("SUITE_ALLOW_UNVERIFIED_INCEPTION", raising=False)
    with pytest.raises(Exception, match="is not the FID Inception-v3 weights file"):
        features.get("inception", "celeba", inception_weights=str(bad))


def test_unverified_inception_weights_run_the_standard_network_under_another_name(tmp_path, monkeypatch):
    path = tmp_path / "random.pth"
    torch.save(_random_inception_state(), path)
    monkeypatch.setenv("SUITE_ALLOW_UNVERIFIED_INCEPTION", "1")
    ext = features.get("inception", "celeba", inception_weights=str(path))
    assert ext.name == "inception-unverified"  # never reported as an Inception FID
    out = ext(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert out["features"].shape == (2, 2048) and out["logits"].shape == (2, 1008)


def _random_inception_state():
    """A state dict with the FID Inception's keys and shapes (torch-fidelity's building blocks,
    random values): the real file cannot be downloaded here."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    layers = {
        "Conv2d_1a_3x3": fe.BasicConv2d(3, 32, kernel_size=3, stride=2),
        "Conv2d_2a_3x3": fe.BasicConv2d(32, 32, kernel_size=3),
        "Conv2d_2b_3x3": fe.BasicConv2d(32, 64, kernel_size=3, padding=1),
        "Conv2d_3b_1x1": fe.BasicConv2d(64, 80, kernel_size=1),
        "Conv2d_4a_3x3": fe.BasicConv2d(80, 192, kernel_size=3),
        "Mixed_5b": fe.InceptionA(192, pool_features=32),
        "Mixed_5c": fe.InceptionA(256, pool_features=64),
        "Mixed_5d": fe.InceptionA(288, pool_features=64),
        "Mixed_6a": fe.InceptionB(288),
        "Mixed_6b": fe.InceptionC(768, channels_7x7=128),
        "Mixed_6c": fe.InceptionC(768, channels_7x7=160),
        "Mixed_6d": fe.InceptionC(768, channels_7x7=160),
        "Mixed_6e": fe.InceptionC(768, channels_7x7=192),
        "Mixed_7a": fe.InceptionD(768),
        "Mixed_7b": fe.InceptionE_1(1280),
        "Mixed_7c": fe.InceptionE_2(2048),
        "fc": torch.nn.Linear(2048, 1008),
    }
    g = torch.Generator().manual_seed(0)
    state = {}
    for name, layer in layers.items():
        for k, v in layer.state_dict().items():
            if k.endswith("running_var"):
                state[f"{name}.{k}"] = torch.ones(v.shape)
            elif v.is_floating_point():
                state[f"{name}.{k}"] = torch.randn(v.shape, generator=g) * 0.05
            else:
                state[f"{name}.{k}"] = v
    return state


# ----------------------------------------------------------------------------- the metric table


def test_every_logged_evaluation_name_finds_its_table_entry():
    from evaluation import metrics

    for key in metrics.METRICS:
        assert metrics.lookup(metrics.metric_name(key, 10_000, "lenet", "fashion_mnist", "train")).key == key
    # names with digits of their own, as the translation evaluator logs them
    for name, key in (("cycle_l1200_a", "cycle_l1"), ("l1_to_truth200_atob", "l1_to_truth"),
                      ("label_acc1000_lenet_btoa", "label_acc"), ("fid1000_lenet_fashion_mnist_train_btoa", "fid"),
                      ("fidinf10k_lenet_digits_train", "fidinf")):
        assert metrics.lookup(name).key == key, name
    for name in ("loss/d", "d_real", "wasserstein_estimate", "class_share/3", "kid10k_lenet_digits_train_std",
                 "lr/g", "objective"):
        assert metrics.lookup(name) is None, name
    assert metrics.direction("is10k_lenet_digits") == "max" and metrics.direction("fid10k_lenet_digits_train") == "min"
    assert metrics.better("fid10k_x", 3.0, 4.0) and not metrics.better("is10k_x", 3.0, 4.0)


def test_ct_statistic_on_a_case_computed_by_hand():
    """Three 1-D training clusters (the k-means cells), so every number can be checked on paper.
    Cell A (train 0, .1, .2): held-out 0.05, 0.3 -> distances .05, .1; generated 0, .1, .2 (copies)
      -> 0, 0, 0. U (generated > held-out pairs) = 0; m = 3, n = 2: Z = (0 - (3 - .5)) / sqrt(3) = -1.44338.
    Cell B (train 10, 10.1, 10.2): held-out 10.05, 10.35 -> .05, .15; generated 10.3 -> .1.
      U = 1; m = 1, n = 2: Z = (1 - (1 - .5)) / sqrt(8 / 12) = 0.61237.
    Cell C (train 20, 20.1, 20.2): held-out 20.1; no generated sample -> left out.
    C_T = (2/5 * -1.44338 + 2/5 * 0.61237) / (4/5) = -0.41550."""
    train = torch.tensor([0, 0.1, 0.2, 10, 10.1, 10.2, 20, 20.1, 20.2]).unsqueeze(1)
    test = torch.tensor([0.05, 0.3, 10.05, 10.35, 20.1]).unsqueeze(1)
    gen = torch.tensor([0.0, 0.1, 0.2, 10.3]).unsqueeze(1)
    value = memorization.ct_statistic(train, test, gen, min_per_cell=0)
    assert value == pytest.approx(((-2.5 / 3**0.5) + (0.5 / (8 / 12) ** 0.5)) / 2, abs=1e-9)
    assert value == pytest.approx(-0.41550, abs=1e-5)
    # the authors' tau: a cell needs more than min_per_cell generated samples
    only_a = memorization.ct_statistic(train, test, gen, min_per_cell=1)
    assert only_a == pytest.approx(-2.5 / 3**0.5, abs=1e-9)
