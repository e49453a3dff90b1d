#!/usr/bin/env python
"""Paired statistics of the CV results and what they allow one to say: every grid point
against its model's best with a verdict (worse, practically equivalent, undecided), the
models' bests against each other, the contenders with their costs, what this design can resolve, the winner corrected for
its selection, factor effects, the noise floor across repeats, a written summary and the
plots that go with them. All outputs go to --out-dir."""

import argparse
import json
from pathlib import Path

import pandas as pd

from cvgrid import plots, wording
from cvgrid.analysis import analyse, write_tables
from cvgrid.metrics import METRICS
from cvgrid.costs import COSTS
from cvgrid.decision import RULES
from cvgrid.race import completed
from cvgrid.stats import Thresholds


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--folds", type=Path, required=True, help="cv_folds.tsv (one row per training job)")
    p.add_argument("--summary", type=Path, required=True, help="cv_summary.tsv")
    p.add_argument("--alpha", type=float, required=True, help="level of the Holm-corrected t-tests")
    p.add_argument("--rope", type=float, required=True, help="region of practical equivalence, in the metric's units")
    p.add_argument("--probability", type=float, required=True, help="posterior probability a verdict needs")
    p.add_argument("--metric", choices=sorted(METRICS), required=True,
                   help="statistics.metric: what ranks the grid points and what the statistics compare")
    p.add_argument("--contender-probability", type=float, required=True,
                   help="a contender is not worse and at most this likely worse than the best by more than the ROPE")
    p.add_argument("--model-costs", type=Path, required=True, help="model_costs.tsv (parameters, macs per model)")
    p.add_argument("--expectations", type=Path, nargs="+", required=True,
                   help="each model's expectation JSON (scripts/expect_choice.py: BBC-CV of final.choose)")
    p.add_argument("--choose", choices=RULES, required=True, help="final.choose: the rule that picks the final point")
    p.add_argument("--cost", choices=COSTS, required=True, help="final.cost: the cost of cheapest_contender")
    p.add_argument("--sampled-ranges", type=json.loads, default=None, metavar="JSON",
                   help="a sampled grid (grid.sample): its ranged axes as JSON {axis: {distribution: [low, high]}} "
                        "({} where every axis is a list; cvgrid.grid.sampled_ranges); left out for a grid of lists")
    p.add_argument("--decide-rounds", type=Path, nargs="*", default=[],
                   help="cv.decide's round tables (results/decide/repeat~R.tsv) in order, where it is on")
    p.add_argument("--out-dir", type=Path, required=True)
    a = p.parse_args(argv)
    raced_folds = pd.read_csv(a.folds, sep="\t")
    raced_cv = pd.read_csv(a.summary, sep="\t")
    # cv.race: the statistics are of the points that trained every fold (all, without a race);
    # the stopped ones are named in the summary's paragraph on the race.
    folds, cv = completed(raced_folds), completed(raced_cv)
    result = analyse(folds, cv, Thresholds(rope=a.rope, probability=a.probability, alpha=a.alpha, metric=a.metric),
                     model_sizes=pd.read_csv(a.model_costs, sep="\t"), contender_probability=a.contender_probability,
                     choose=a.choose, cost=a.cost,
                     expectations=[json.loads(path.read_text()) for path in a.expectations], ranges=a.sampled_ranges)
    write_tables(result, a.out_dir)
    # cv.decide's rounds, in order (none without it): which points got repeats, verdicts changed.
    rounds = [pd.read_csv(path, sep="\t") for path in a.decide_rounds]
    text = wording.summary_text(result, extra=[
        wording.race_paragraph(raced_folds, raced_cv, a.metric),
        wording.decide_paragraph(rounds, result.tables["compare_to_best"], int(folds["fold"].nunique()),
                                 choose=a.choose),
    ])
    wording.write_summary(text, a.out_dir, markdown=False)
    wording.write_decision(result, a.out_dir)
    plots.factor_effects(result.tables["factor_effects"], a.out_dir / "factor_effects.svg")
    plots.parallel_coordinates(cv, a.out_dir / "parallel_coordinates.svg", metric=a.metric, ranges=a.sampled_ranges)
    if a.sampled_ranges is not None:
        plots.factor_trends(cv, result.tables["factor_trends"], result.tables["factor_bins"], a.sampled_ranges,
                            a.out_dir / "factor_trends.svg", metric=a.metric)


if __name__ == "__main__":
    main()
