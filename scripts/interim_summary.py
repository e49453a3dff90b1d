#!/usr/bin/env python
"""While a run goes on: an interim summary of the training jobs finished so far, written to
its own folder (results/interim/ by default), every file marked .interim.: which grid points
are complete, which have k of n folds, verdicts for the complete points only; with cv.race or
cv.decide, the jobs their rounds written so far plan (stopped points' later folds never run,
added repeats do). Reads the run's files and nothing else: no Snakemake, no torch, so it runs
beside the controller on a SLURM login node (`make status`). Give it the run's working
directory and the same --configfile and --config as the run."""

import argparse
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from cvgrid.grid import ConfigError
from cvgrid.interim import InterimError, run_config, write_interim
from cvgrid.summary import MetricsError


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workdir", type=Path, default=Path("."), help="the run's working directory (snakemake -d)")
    p.add_argument("--configfile", type=Path, nargs="*", default=[], help="the run's --configfile(s)")
    p.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE", help="the run's --config values")
    p.add_argument("--out", type=Path, default=None, help="default: WORKDIR/results/interim")
    a = p.parse_args(argv)
    out = a.out or a.workdir / "results" / "interim"
    try:
        config = run_config(a.workdir, a.configfile, a.config)
        facts = write_interim(a.workdir, config, out)
    except (InterimError, ConfigError, MetricsError) as error:
        sys.exit(f"error: {error}")
    except WorkflowError as error:  # the schema's check, naming the key
        sys.exit(f"error: config: {error}")
    for root, f in facts.items():
        stopped = f", {f['points_stopped']} stopped early by the race" if f["points_stopped"] else ""
        state = ("training complete" if f["training_complete"] else f"{f['pending']} (the jobs counted are those"
                 " planned so far)" if f["pending"] else "running")
        print(f"{root}: {f['jobs_finished']} of {f['jobs']} training jobs finished, {f['points_complete']} of "
              f"{f['points']} grid points complete{stopped}; {state}; INTERIM summary in "
              f"{out / root.removeprefix('results').lstrip('/')}/summary.interim.html")


if __name__ == "__main__":
    main()
