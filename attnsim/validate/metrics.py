"""Error metrics of predictions against measurements."""
from __future__ import annotations

import numpy as np

MAX_PAIRS = 200_000  # sign accuracy samples this many pairs (seeded) when there are more


def ape(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    """Absolute percentage error |pred - meas| / meas, as a fraction."""
    return np.abs(pred - meas) / meas


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (average ranks for ties)."""
    if len(a) < 2:
        return float("nan")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    # average the ranks of ties
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def sign_accuracy(pred: np.ndarray, meas: np.ndarray, seed: int = 0) -> float:
    """Fraction of pairs (i, j) whose faster member is predicted right (the direction of the
    speedup of one configuration over another). Pairs with equal measured time are skipped.
    Exact over all pairs up to MAX_PAIRS; else over MAX_PAIRS pairs drawn with a fixed seed."""
    n = len(pred)
    if n < 2:
        return float("nan")
    if n * (n - 1) // 2 <= MAX_PAIRS:
        i, j = np.triu_indices(n, k=1)
    else:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, n, MAX_PAIRS)
        j = rng.integers(0, n, MAX_PAIRS)
        keep = i != j
        i, j = i[keep], j[keep]
    dm = np.sign(meas[i] - meas[j])
    dp = np.sign(pred[i] - pred[j])
    valid = dm != 0
    return float((dm[valid] == dp[valid]).mean()) if valid.any() else float("nan")


def summarize(pred: np.ndarray, meas: np.ndarray) -> dict:
    """n, median/P90/max APE, Spearman, sign accuracy; and the median signed error (bias)."""
    pred, meas = np.asarray(pred, float), np.asarray(meas, float)
    if len(pred) == 0:
        return {"n": 0}
    e = ape(pred, meas)
    return {
        "n": int(len(pred)),
        "median_ape": float(np.median(e)),
        "p90_ape": float(np.quantile(e, 0.9)),
        "max_ape": float(e.max()),
        "spearman": spearman(pred, meas),
        "sign_accuracy": sign_accuracy(pred, meas),
        "median_ratio": float(np.median(pred / meas)),
    }
