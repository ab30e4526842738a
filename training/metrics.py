"""Quality metrics for generated images: pure functions over feature arrays and pixel arrays.

Feature metrics take (N, D) float arrays (training/features.py gives EfficientNet-Lite0's 1280).
Pixel metrics take uint8 N x 3 x H x W arrays or tensors. Each result is deterministic for a seed.
The feature network is not Inception, so these are not FID and must never be reported as such.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# Distance blocks are capped at this many float32 entries (64 MB), so 10,000 x 10,000 sets
# never need a 400 MB matrix (plus temporaries) at once.
_BLOCK_ENTRIES = 16 * 1024 * 1024
# KID computes one kernel matrix over both sets up to this many rows in all (4096^2 float64:
# 128 MB); larger sets take per-subset products instead.
_KID_FULL_KERNEL_MAX = 4096


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b through torch, so that every product here runs on the torch threads the caller
    set. numpy's OpenBLAS keeps a pool of its own: on 2 cores with one busy process beside,
    its SVD, solves and products ran 2.7x slower (torch on 1 thread: unchanged), and under
    heavier load the 0.2 s classifier test took 17 s."""
    return (torch.from_numpy(a) @ torch.from_numpy(b)).numpy()


def _check_features(a: np.ndarray, name: str, at_least: int = 2) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D feature array (N, D), got shape {a.shape}")
    if len(a) < at_least:
        raise ValueError(f"{name}: needs at least {at_least} rows, got {len(a)}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: features contain NaN or infinity")
    return a.astype(np.float32, copy=False)


def _check_pair(real: np.ndarray, fake: np.ndarray, at_least: int = 2) -> tuple[np.ndarray, np.ndarray]:
    real, fake = _check_features(real, "real", at_least), _check_features(fake, "fake", at_least)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in width: {real.shape[1]} vs {fake.shape[1]}")
    return real, fake


def _sq_dists(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + b_sq[None, :] - 2.0 * _mm(a, b.T)
    return np.maximum(d, 0.0, out=d)  # rounding can make a self-distance slightly negative


def _row_blocks(n_rows: int, n_cols: int):
    step = max(1, _BLOCK_ENTRIES // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield start, min(n_rows, start + step)


def kth_neighbour_sq_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Squared distance from each row of x to its k-th nearest *other* row (a duplicate row
    counts as a neighbour at distance 0)."""
    if not 1 <= k < len(x):
        raise ValueError(f"k must be between 1 and {len(x) - 1} for {len(x)} samples, got {k}")
    x_sq = (x * x).sum(1)
    out = np.empty(len(x), dtype=np.float32)
    for s, e in _row_blocks(len(x), len(x)):
        d = _sq_dists(x[s:e], x, x_sq)
        d[np.arange(e - s), np.arange(s, e)] = np.inf
        out[s:e] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return out


def nearest_sq_distances(query: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Squared distance from each query row to its nearest ref row."""
    ref_sq = (ref * ref).sum(1)
    out = np.empty(len(query), dtype=np.float32)
    for s, e in _row_blocks(len(query), len(ref)):
        out[s:e] = _sq_dists(query[s:e], ref, ref_sq).min(1)
    return out


def _share_inside(query: np.ndarray, ref: np.ndarray, ref_sq_radii: np.ndarray) -> float:
    """Share of query rows inside at least one ball (ref row, its radius)."""
    ref_sq = (ref * ref).sum(1)
    inside = 0
    for s, e in _row_blocks(len(query), len(ref)):
        inside += int((_sq_dists(query[s:e], ref, ref_sq) <= ref_sq_radii[None, :]).any(1).sum())
    return inside / len(query)


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance's estimator on these features: the unbiased MMD^2 with the
    cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over `subsets` random subsets
    of `subset_size` rows from each set (capped at the smaller set). Returns raw (mean, std);
    reports multiply by 1e3. Near 0 (and possibly slightly negative) for one distribution.

    When subset_size covers both whole sets, every subset is the same and std is 0: the std
    describes subset sampling, not the sets' own sampling error."""
    real, fake = _check_pair(real, fake)
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError(f"subset_size must be >= 2, got {subset_size}")
    d = real.shape[1]
    rng = np.random.default_rng(seed)
    n = len(real) + len(fake)
    full = n <= _KID_FULL_KERNEL_MAX and n * n <= 3 * subsets * m * m
    if full:
        # One kernel matrix over both sets, then each subset is an index into it: a few hundred
        # to a few thousand pictures (a training run's evaluation) cost one product, not 300.
        z = np.concatenate([real, fake])
        kernel = (_mm(z, z.T) / d + 1.0).astype(np.float64) ** 3
    values = np.empty(subsets)
    for i in range(subsets):
        ix = rng.choice(len(real), m, replace=False)
        iy = rng.choice(len(fake), m, replace=False)
        if full:
            iy = iy + len(real)
            kxx, kyy, kxy = kernel[np.ix_(ix, ix)], kernel[np.ix_(iy, iy)], kernel[np.ix_(ix, iy)]
        else:
            x, y = real[ix], fake[iy]
            # The products in float32 (fast BLAS), the kernel and sums in float64: MMD^2 is a
            # small difference of large sums.
            kxx = (_mm(x, x.T) / d + 1.0).astype(np.float64) ** 3
            kyy = (_mm(y, y.T) / d + 1.0).astype(np.float64) ** 3
            kxy = (_mm(x, y.T) / d + 1.0).astype(np.float64) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values[i] = within - 2.0 * kxy.mean()
    return float(values.mean()), float(values.std())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 5) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019). Each set's manifold is the
    union of balls around its samples, each ball reaching the sample's k-th nearest neighbour
    in its own set. Precision: share of fake samples inside the real manifold (are samples
    realistic?). Recall: share of real samples inside the fake manifold (is the variety covered?)."""
    real, fake = _check_pair(real, fake, at_least=k + 1)
    precision = _share_inside(fake, real, kth_neighbour_sq_radii(real, k))
    recall = _share_inside(real, fake, kth_neighbour_sq_radii(fake, k))
    return precision, recall


def _logistic_loss(xb: np.ndarray, y: np.ndarray, w: np.ndarray, reg: np.ndarray) -> float:
    z = _mm(xb, w)
    return float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * (reg * w * w).sum())


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, iterations: int = 50) -> np.ndarray:
    """Weights (last entry: the bias) minimising mean log-loss + l2 / (2n) |w|^2 (scikit-learn's
    C = 1 / l2, scaled by 1/n; the bias is not penalised). Newton's method with a halving step:
    exact and deterministic in ~10 steps when the columns are few (see c2st_accuracy)."""
    n = len(x)
    xb = np.hstack([x, np.ones((n, 1))])
    reg = np.full(xb.shape[1], l2 / n)
    reg[-1] = 1e-10  # keeps the Hessian invertible when a column is constant, barely pulls the bias
    w = np.zeros(xb.shape[1])
    loss = _logistic_loss(xb, y, w, reg)
    for _ in range(iterations):
        p = 0.5 * (1.0 + np.tanh(0.5 * _mm(xb, w)))  # the logistic function, without overflow
        grad = _mm(xb.T, p - y) / n + reg * w
        hess = _mm(xb.T * (p * (1.0 - p)), xb) / n + np.diag(reg)
        step = torch.linalg.solve(torch.from_numpy(hess), torch.from_numpy(grad)).numpy()
        t = 1.0
        while True:
            new_loss = _logistic_loss(xb, y, w - t * step, reg)
            if new_loss <= loss or t < 1e-6:
                break
            t *= 0.5
        if new_loss > loss:  # no step lowers the loss: at the optimum, up to rounding
            break
        w, improved, loss = w - t * step, loss - new_loss, new_loss
        if improved < 1e-12 * max(1.0, loss):
            break
    return w


def c2st_accuracy(real: np.ndarray, fake: np.ndarray, seed: int = 0, l2: float = 1.0,
                  max_per_class: int = 2000) -> float:
    """Classifier two-sample test: held-out accuracy of an L2-regularised logistic regression
    told to separate real from fake features. 0.5 = indistinguishable, 1.0 = always told apart.

    Classes are balanced (the larger set is subsampled), each split in two halves; the model
    trains on one half of both sets (standardised with that half's statistics) and is scored
    on the other, then the halves swap and the two accuracies are averaged: every sample is
    scored once, held out, which halves the noise of a single split. At most `max_per_class`
    samples per set are used: with more rows than features a Newton step costs rows x 1280^2,
    and 2000 per class already pin the accuracy to about +-0.01."""
    real, fake = _check_pair(real, fake, at_least=4)
    rng = np.random.default_rng(seed)
    n = min(len(real), len(fake), max_per_class) // 2 * 2
    r = real[rng.permutation(len(real))[:n]].astype(np.float64)
    f = fake[rng.permutation(len(fake))[:n]].astype(np.float64)
    h = n // 2
    halves = [(np.concatenate([r[:h], f[:h]]), np.concatenate([r[h:], f[h:]])),
              (np.concatenate([r[h:], f[h:]]), np.concatenate([r[:h], f[:h]]))]
    labels = np.concatenate([np.zeros(h), np.ones(h)])
    accuracies = []
    for train, test in halves:
        mu, sd = train.mean(0), train.std(0)
        sd[sd < 1e-8] = 1.0  # a constant feature carries no signal; leave it at 0 after centring
        xtr, xte = (train - mu) / sd, (test - mu) / sd
        if len(xtr) < xtr.shape[1]:
            # The L2-optimal w lies in the span of the training rows: with xtr = U S V^T, fitting
            # on xtr V (penalty unchanged, since |V b| = |b|) gives the same logits for any row,
            # with n unknowns instead of 1280, so Newton's method is cheap.
            v = torch.linalg.svd(torch.from_numpy(xtr), full_matrices=False)[2].T.numpy()
            xtr, xte = _mm(xtr, v), _mm(xte, v)
        w = _fit_logistic(xtr, labels, l2)
        accuracies.append(float(((_mm(xte, w[:-1]) + w[-1] > 0) == labels).mean()))
    return float(np.mean(accuracies))


def copy_rate(train: np.ndarray, fake: np.ndarray, train_mirror: np.ndarray | None = None,
              quantile: float = 0.05) -> float:
    """Share of generated samples that sit closer to a training sample (or to a training
    sample's mirror image, when `train_mirror` holds their features) than `quantile` of the
    training samples sit to their own nearest other training sample.

    Why the 5th percentile and not the median: a new picture from the data distribution is as
    far from the training set as a training picture is from its nearest neighbour, so with the
    median half of a perfectly novel generator would count as copies. With 0.05 a novel
    generator scores about 0.05 and a memorising one (copies, mirrored copies) near 1.
    The training set must be de-duplicated (curation does it): duplicates pull the threshold to 0."""
    train, fake = _check_pair(train, fake)
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    nn_train = np.sqrt(kth_neighbour_sq_radii(train, 1))
    threshold = float(np.quantile(nn_train, quantile))
    ref = train
    if train_mirror is not None:
        mirror = _check_features(train_mirror, "train_mirror")
        if mirror.shape[1] != train.shape[1]:
            raise ValueError(f"train_mirror features are {mirror.shape[1]} wide, train {train.shape[1]}")
        ref = np.concatenate([train, mirror])
    return float(np.mean(np.sqrt(nearest_sq_distances(fake, ref)) < threshold))


def _pixels(images, name: str) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{name}: expected uint8 images N x 3 x H x W, got {images.dtype} {images.shape}")
    if len(images) == 0:
        raise ValueError(f"{name}: no images")
    return images


_CHANNEL_PAIRS = ((0, 1), (0, 2), (1, 2))  # RG, RB, GB


def colour_histogram(images, bins: int = 16) -> np.ndarray:
    """The three 2-D colour histograms (red-green, red-blue, green-blue; bins^2 cells each) of
    every pixel of a uint8 image set, concatenated and normalised to sum to 1.

    Pairs rather than one joint RGB histogram: both see a channel swap (the three per-channel
    histograms alone would not, when a set's green and blue are alike), but the joint one has
    bins^3 cells, which a few hundred images fill so sparsely that two halves of one drawn set
    are already 0.33 apart at 16 bins (a green/blue swap: 0.63). With pairs: 0.07 vs 0.24."""
    images = _pixels(images, "images")
    if not 1 <= bins <= 256:
        raise ValueError(f"bins must be in 1..256, got {bins}")
    counts = np.zeros((len(_CHANNEL_PAIRS), bins * bins), dtype=np.int64)
    for s in range(0, len(images), 256):  # bounded memory on 10,000 large images
        q = (images[s:s + 256].astype(np.int32) * bins) >> 8
        for i, (a, b) in enumerate(_CHANNEL_PAIRS):
            counts[i] += np.bincount((q[:, a] * bins + q[:, b]).ravel(), minlength=bins * bins)
    return (counts / counts.sum()).ravel()


def colour_histogram_distance(real_images, fake_images, bins: int = 16) -> float:
    """Symmetric chi-square distance, 0.5 * sum (p - q)^2 / (p + q), between the channel-pair
    colour histograms of two image sets: 0 = same colours, 1 = no colour in common. Sampling
    alone keeps it above 0: compare values at similar set sizes."""
    p, q = colour_histogram(real_images, bins), colour_histogram(fake_images, bins)
    s = p + q
    nz = s > 0
    return float(0.5 * (((p - q) ** 2)[nz] / s[nz]).sum())


def border_energy(images, frame: int | None = None) -> float:
    """Mean absolute luminance gradient in a `frame`-pixel band along the picture's edges,
    divided by the mean in the interior (default band: 1/32 of the side, at least 1 px).

    What it means: crops of real pictures are cut out of a larger scene, so their edges are
    about as busy as their inside, or somewhat calmer (background); compare a generator's
    value with the real set's. Far below it: flat bars or smeared edges (zero or replicated
    padding, translation augmentation leaking into G). Far above: lines or stripes drawn along
    the edges. NaN when the interior is perfectly flat."""
    images = _pixels(images, "images")
    h, w = images.shape[2:]
    f = frame if frame is not None else max(1, min(h, w) // 32)
    if f < 1 or min(h, w) - 1 < 4 * f:
        raise ValueError(f"frame {f} px does not fit {h}x{w} images (needs a side of at least {4 * f + 1})")
    band = np.zeros((h - 1, w - 1), dtype=bool)
    band[:f], band[-f:], band[:, :f], band[:, -f:] = True, True, True, True
    edge_sum = inner_sum = 0.0
    for s in range(0, len(images), 256):
        x = images[s:s + 256].astype(np.float32)
        y = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
        g = np.abs(y[:, 1:, 1:] - y[:, 1:, :-1]) + np.abs(y[:, 1:, 1:] - y[:, :-1, 1:])
        edge_sum += float(g[:, band].sum())
        inner_sum += float(g[:, ~band].sum())
    edge_mean = edge_sum / (len(images) * band.sum())
    inner_mean = inner_sum / (len(images) * (~band).sum())
    return edge_mean / inner_mean if inner_mean > 0 else math.nan
