"""Small, dependency-free statistics: medians of rounds, percentiles of samples, safe ratios."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The *q*-th percentile (0..100) with linear interpolation between closest ranks; None when empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    data = sorted(values)
    if not data:
        return None
    position = (len(data) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return data[low] + (data[high] - data[low]) * (position - low)


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Median of per-round ratios a[i]/b[i]: rounds that ran side by side share the machine's noise."""
    ratios = [x / y for x, y in zip(a, b, strict=False) if y]
    return median(ratios)


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
