"""Grids with known true accuracies, to measure how far each estimate of a rule's expected
accuracy (cvgrid.decision.expectation: raw mean, conservative bound, BBC-CV) lies from the
truth. Used by tests/test_decision.py and scripts/simulate_decision.py."""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from cvgrid import decision

# name: (true accuracy of each grid point, its cost). Equal points: any choice is pure selection
# (the cheapest tier, six points of equal cost, is chosen from by the higher mean). One clearly
# better point: nothing to correct. A contender set whose cheaper points are worse: the cheapest
# contender is often a worse point that looked good on these folds.
SCENARIOS = {
    "equal points": (np.full(18, 0.95), np.repeat([1.0, 2.0, 3.0], 6)),
    "one clearly better": (np.r_[np.full(4, 0.93), 0.97, np.full(7, 0.93)], np.arange(12.0)),
    "contender set": (np.array([0.96, 0.958, 0.955, 0.95, 0.94, 0.92]), np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])),
}


def simulate(true_accuracy, samples: int, folds: int, correlation: float, rng: np.random.Generator):
    """(correct, fold, scores) as cvgrid.decision takes them, for one repeat of `folds`-fold CV
    of grid points with these true accuracies: a sample is right when a latent normal (shared
    across points with `correlation`: hard images are hard for every point) lies below the
    point's quantile, so P(right) is exactly the point's true accuracy."""
    true_accuracy = np.asarray(true_accuracy)
    shared = rng.standard_normal((samples, 1))
    own = rng.standard_normal((samples, len(true_accuracy)))
    latent = np.sqrt(correlation) * shared + np.sqrt(1 - correlation) * own
    correct = latent < sps.norm.ppf(true_accuracy)
    fold = rng.permutation(np.arange(samples) % folds)
    scores = np.stack([correct[fold == f].mean(axis=0) for f in range(folds)], axis=1)
    return correct[None], fold[None], scores


def expectation_errors(true_accuracy, cost, rule: str, simulations: int = 30, samples: int = 2000, folds: int = 5,
                       correlation: float = 0.8, bags: int = 200, seed: int = 1, rope: float = 0.005,
                       probability: float = 0.95) -> dict:
    """{estimate name: (mean error, RMSE)} over `simulations` grids, the error being the estimate
    minus the true accuracy of the point the rule chose, for ``raw``, ``estimate`` (BBC-CV) and
    ``bound``."""
    rng = np.random.default_rng(seed)
    errors = {"raw": [], "estimate": [], "bound": []}
    for simulation in range(simulations):
        correct, fold, scores = simulate(true_accuracy, samples, folds, correlation, rng)
        result = decision.expectation(scores, correct, fold, rule, cost, n_train=samples * (folds - 1) / folds,
                                      n_test=samples / folds, rope=rope, probability=probability, bags=bags,
                                      seed=simulation)
        for name in errors:
            errors[name].append(result[name] - true_accuracy[result["chosen"]])
    return {name: (float(np.mean(e)), float(np.sqrt(np.mean(np.square(e))))) for name, e in errors.items()}
