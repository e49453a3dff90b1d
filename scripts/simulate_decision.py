#!/usr/bin/env python
"""How far the accuracy to expect from each rule (raw mean, conservative bound, BBC-CV) lies
from the truth, on simulated grids with known true accuracies (cvgrid.simulated_grids): prints
the mean error (bias) and RMSE of each estimate, in accuracy points, per scenario and rule."""

import argparse
import time

from cvgrid import decision
from cvgrid.simulated_grids import SCENARIOS, expectation_errors


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--simulations", type=int, default=200, help="simulated grids per scenario and rule")
    p.add_argument("--bags", type=int, default=200, help="BBC-CV bootstrap bags per grid")
    p.add_argument("--samples", type=int, default=2000, help="images per simulated data set")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    print(f"{a.simulations} grids of {a.samples} images, 5 folds, {a.bags} bags; error = estimate - true accuracy "
          "of the chosen point, in points: bias (RMSE)")
    for scenario, (truth, cost) in SCENARIOS.items():
        for rule in decision.RULES:
            start = time.perf_counter()
            errors = expectation_errors(truth, cost, rule, a.simulations, a.samples, bags=a.bags, seed=a.seed)
            figures = "  ".join(f"{name} {100 * b:+.3f} ({100 * r:.3f})" for name, (b, r) in errors.items())
            print(f"{scenario:19s} {rule:19s} {figures}  [{time.perf_counter() - start:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
