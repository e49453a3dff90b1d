"""cv.race on a real SLURM cluster (`snakemake --profile profiles/slurm`, the test cluster of
tests/slurm/start.sh; without it this skips, with CI=true it fails: fixture ``slurm_cluster``).
The tiny raced grid of tests/test_race_workflow.py: every training job is a SLURM job, the race's
rounds run in the controller (local rules: no SLURM job), the hopeless point is stopped after the
first folds, and the results are the local raced run's, fold for fold."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import write_config, write_image_folder
from slurm_cluster import slurm_cluster  # noqa: F401 (a fixture)
from test_race_workflow import AFTER, FOLDS, GOOD, HOPELESS, expected, race_config, trained
from test_slurm_workflow import SLURM_ARGS, TRAIN_LOGS, RUN_TIMEOUT_S, Run, metrics_by_fold, runs_to_the_end

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def race_runs(slurm_cluster, tmp_path_factory):  # noqa: F811 (the fixture)
    """The raced tiny grid on SLURM and locally, at once."""
    root = tmp_path_factory.mktemp("slurm_race")
    data = write_image_folder(root / "images", n_classes=3, per_class=20, size=(40, 40))
    config = write_config(root / "race.yaml", race_config(data))
    with runs_to_the_end(2 * RUN_TIMEOUT_S) as runs:  # ten training jobs, one GPU: one at a time
        runs["slurm"] = Run("slurm", root / "slurm", config, *SLURM_ARGS)
        runs["local"] = Run("local", root / "local", config, "--cores", "2")
    return runs


def test_a_race_on_slurm_trains_on_the_cluster_and_decides_in_the_controller(race_runs):
    slurm, local = race_runs["slurm"], race_runs["local"]
    slurm.assert_ok()
    local.assert_ok()
    # Every training job the race asked for, and no other, ran as a SLURM job.
    assert trained(slurm.workdir) == expected(GOOD, range(FOLDS)) | expected([HOPELESS], range(AFTER))
    ids = {fold: m["slurm_job_id"] for fold, m in metrics_by_fold(slurm.workdir).items()}
    assert len(ids) == 10 and all(isinstance(i, str) and i.isdigit() for i in ids.values()), ids
    # The rounds ran in the snakemake process (the controller on a cluster): no SLURM job.
    rule_dirs = {p.name for p in (slurm.workdir / ".snakemake" / "slurm_logs").iterdir()}
    assert TRAIN_LOGS in rule_dirs and not {"rule_race", "rule_list_race_jobs"} & rule_dirs, rule_dirs
    assert "localcheckpoint race:" in slurm.output
    # The same race and the same numbers as locally (CPU, fp32, one thread, same seeds).
    for k in range(AFTER, FOLDS):
        on_slurm = pd.read_csv(slurm.workdir / "results" / "race" / f"fold~{k}.tsv", sep="\t")
        here = pd.read_csv(local.workdir / "results" / "race" / f"fold~{k}.tsv", sep="\t")
        pd.testing.assert_frame_equal(on_slurm, here)
    summary = pd.read_csv(slurm.workdir / "results" / "cv_summary.tsv", sep="\t")
    here = pd.read_csv(local.workdir / "results" / "cv_summary.tsv", sep="\t")
    columns = [c for c in here.columns if c not in ("minutes",)]
    pd.testing.assert_frame_equal(summary[columns], here[columns])
    assert summary.loc[summary["learning_rate"] == 100.0, "race"].item() == "stopped early: worse after 2 folds"
    refit = json.loads((slurm.workdir / "results" / "final" / "model_a" / "model.json").read_text())
    assert refit["grid_point"]["learning_rate"] != 100.0
    assert "stopped early: worse after 2 folds" in (slurm.workdir / "results" / "stats" / "summary.html").read_text()
