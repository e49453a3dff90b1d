#!/usr/bin/env python
"""The accuracy to expect from the procedure that chooses one model's final grid point
(final.choose, final.cost): BBC-CV (cvgrid.decision.decide: bootstrap the pooled out-of-fold
predictions, apply the rule in the bag, score its choice out of the bag), with the chosen
point's raw mean and the conservative bound beside it, as one JSON file."""

import argparse
import sys
from pathlib import Path

import pandas as pd

from cvgrid.costs import COSTS, join_costs, training_costs
from cvgrid.decision import RULES, DecisionError, decide, expectation_record, prediction_table
from cvgrid.grid import axes_of
from cvgrid.io import write_json
from cvgrid.race import completed
from cvgrid.summary import MetricsError, planned_metrics, read_metrics


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--folds", type=Path, required=True, help="cv_folds.tsv")
    p.add_argument("--metrics-list", type=Path, required=True, help="train_jobs.txt (predictions.tsv beside each)")
    p.add_argument("--model-costs", type=Path, required=True, help="model_costs.tsv")
    p.add_argument("--choose", choices=RULES, required=True)
    p.add_argument("--cost", choices=COSTS, required=True)
    p.add_argument("--rope", type=float, required=True)
    p.add_argument("--probability", type=float, required=True)
    p.add_argument("--contender-probability", type=float, required=True)
    p.add_argument("--bags", type=int, default=1000, help="bootstrap samples (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    raced = pd.read_csv(a.folds, sep="\t")
    # cv.race: the procedure chooses among the points that trained every fold (all, without a race).
    folds = completed(raced)
    try:
        metrics = [path for path in planned_metrics(a.metrics_list) if read_metrics(path)["config"]["model"] == a.model]
        predictions = prediction_table(metrics, axes_of(folds))
        if "race" in raced:  # the stopped points' partial folds are no candidates
            predictions = predictions.merge(folds[axes_of(folds)].drop_duplicates())
        costs = join_costs(training_costs(folds), pd.read_csv(a.model_costs, sep="\t"))
        result = decide(folds, predictions, costs, a.choose, a.cost, rope=a.rope, probability=a.probability,
                        contender_probability=a.contender_probability, model=a.model, bags=a.bags, seed=a.seed)
    except (DecisionError, MetricsError) as error:
        sys.exit(f"error: {error}")
    write_json(expectation_record(a.model, result), a.out)


if __name__ == "__main__":
    main()
