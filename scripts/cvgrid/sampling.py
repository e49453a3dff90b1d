"""Grid points drawn from ranges (config `grid.sample`), once, when the workflow plans.

Pure numpy and scipy.stats.qmc: the Snakefile plans with this, so nothing here imports torch.
The config's checks (one-line errors naming the key) are in cvgrid.grid; this module turns
checked specs into points.

Every axis of the grid takes one dimension of a point in [0, 1)^d, in the order of the grid's
axes (cvgrid.grid.AXES), so the points depend on the axes, the method and the seed, never on
how many are drawn: point i is the i-th of a scrambled Sobol sequence (method sobol) or the
draw of a generator seeded with (seed, i) (method random). Raising `points` keeps every point
already drawn and adds the next ones of the sequence.

A coordinate u in [0, 1) becomes a value of its axis:
- a list (choices): its element floor(u x n), so each of n choices takes 1/n of the interval;
- uniform [lo, hi]: lo + u (hi - lo); log_uniform [lo, hi]: lo (hi / lo)^u; both rounded to
  SIGNIFICANT_DIGITS significant digits on a float axis, to the nearest integer on an integer
  axis (kept within [lo, hi]);
- int [a, b]: each integer from a to b inclusive takes an equal share of the interval.
A draw that equals an earlier point after rounding is skipped, and the next one of the
sequence is taken: the points are the first `points` distinct ones, in sequence order.
"""

from __future__ import annotations

import math

import numpy as np

# Sampled floats keep this many significant digits: folder names stay short
# (learning_rate~0.00123) and the same on every machine (a float's str() is its shortest repr).
SIGNIFICANT_DIGITS = 3
DISTRIBUTIONS = ("log_uniform", "uniform", "int")
METHODS = ("sobol", "random")
DEFAULT_METHOD = "sobol"
DEFAULT_SEED = 0
# The most draws searched for `points` distinct points (only narrow ranges or near-exhaustive
# samples of a small finite space come close).
MAX_DRAWS = 2**16


def round_significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """`value` rounded to `digits` significant digits, through its decimal form, so that its
    str() is that decimal (0.000123456 -> 0.000123)."""
    return float(f"{value:.{digits - 1}e}")


def unit_points(method: str, seed: int, dimensions: int, count: int) -> np.ndarray:
    """The first `count` points of the method's sequence in [0, 1)^dimensions, in order."""
    if method == "sobol":
        from scipy.stats import qmc  # only a sampled grid pays for importing scipy.stats

        # Drawn as a power of two (Sobol's balanced sizes, no warning) and cut: the first
        # `count` points are the same whatever the power.
        size = 1 << max(count - 1, 0).bit_length()
        return qmc.Sobol(d=dimensions, scramble=True, rng=seed).random(size)[:count]
    if method == "random":
        return np.array([np.random.default_rng([seed, index]).random(dimensions) for index in range(count)])
    raise ValueError(f"unknown method {method!r} (methods: {METHODS})")


def value_at(spec, kind: type, u: float):
    """The value of an axis (spec: a list of choices, or (distribution, low, high)) at
    coordinate u in [0, 1), as the axis's type `kind` (int, float or str)."""
    if isinstance(spec, list):
        return kind(spec[min(int(u * len(spec)), len(spec) - 1)])
    distribution, low, high = spec
    if distribution == "int":
        return int(low + min(int(u * (high - low + 1)), high - low))
    if distribution == "uniform":
        x = low + u * (high - low)
    elif distribution == "log_uniform":
        x = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    else:
        raise ValueError(f"unknown distribution {distribution!r} (distributions: {DISTRIBUTIONS})")
    if kind is int:
        return min(max(round(x), math.ceil(low)), math.floor(high))
    return kind(round_significant(x))


def sample_points(specs: dict, kinds: dict, points: int, method: str, seed: int) -> tuple[list[dict], int]:
    """The first `points` distinct grid points of the sequence, each {axis: value} with the
    axes of `specs` (in their order), and how many draws that took. Fewer points where
    MAX_DRAWS draws hold fewer distinct ones (the caller says so)."""
    axes = list(specs)
    found: dict[tuple, None] = {}  # an ordered set of the points' values
    count = points
    while True:
        draws = unit_points(method, seed, len(axes), count)
        found.clear()
        for used, u in enumerate(draws, start=1):
            found.setdefault(tuple(value_at(specs[a], kinds[a], x) for a, x in zip(axes, u)))
            if len(found) == points:
                return [dict(zip(axes, values)) for values in found], used
        if count >= MAX_DRAWS:
            return [dict(zip(axes, values)) for values in found], count
        count = min(2 * count, MAX_DRAWS)
