"""The SLURM profiles as Snakemake reads them (a dry run, no cluster needed): a site profile with
the account combined with the workflow profile keeps the account for every job, and the workflow
profile gives each submitted rule its resources, per model and attempt. Where the jobs land is
checked on the real test cluster (tests/test_slurm_workflow.py)."""

from __future__ import annotations

import math
import re

import pytest

from conftest import REPO, run_snakemake, tiny_config, write_config, write_image_folder

WORKFLOW_PROFILE = REPO / "profiles" / "slurm"
SITE_EXAMPLE = REPO / "profiles" / "site-example"


def planned_jobs(output: str) -> list[dict]:
    """Each job of a dry run: its rule, wildcards and resources."""
    jobs = []
    pattern = r"(?:local)?(?:rule|checkpoint) (\w+):\n(.*?)\n\s*resources: ([^\n]*)"
    for rule, body, resources in re.findall(pattern, output, re.S):
        wildcards = re.search(r"wildcards: ([^\n]*)", body)
        jobs.append({
            "rule": rule,
            "wildcards": dict(w.split("=", 1) for w in wildcards[1].split(", ")) if wildcards else {},
            "resources": dict(r.split("=", 1) for r in resources.split(", ")),
        })
    return jobs


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    root = tmp_path_factory.mktemp("profiles")
    data = write_image_folder(root / "images", n_classes=3, per_class=20)
    config = write_config(root / "config.yaml", tiny_config(
        data, models={"model_a": {}, "model_b": {"pretrained": "none"}},
        grid={"model": ["model_a", "model_b"], "learning_rate": [0.001]}))
    work = root / "work"
    work.mkdir()
    result = run_snakemake(work, config, "-n", "--profile", str(SITE_EXAMPLE),
                           "--workflow-profile", str(WORKFLOW_PROFILE))
    return planned_jobs(result.stdout + result.stderr)


SUBMITTED = {"prepare_dataset", "make_folds", "check_gpu", "train", "refit_best"}


def test_the_site_profiles_account_reaches_every_job_and_no_partition_is_fixed(plan):
    rules = {job["rule"] for job in plan}
    assert SUBMITTED <= rules, rules
    for job in plan:
        assert job["resources"]["slurm_account"] == "myproject", job
        # A slurm_partition would bypass the partition file: none may come from the profiles.
        assert "slurm_partition" not in job["resources"], job


def test_training_jobs_ask_for_one_gpu_and_memory_and_time_by_model(plan):
    # attempt 1: memory after the data step (test below), minutes
    expected = {"model_a": ("<TBD>", "30"), "model_b": ("<TBD>", "60")}
    gpu_jobs = [job for job in plan if job["rule"] in ("train", "refit_best")]
    assert {(job["rule"], job["wildcards"]["model"]) for job in gpu_jobs} == {
        (rule, model) for rule in ("train", "refit_best") for model in expected}
    for job in gpu_jobs:
        resources = job["resources"]
        assert resources["gpu"] == "1", job
        assert (resources["mem_mb"], resources["runtime"]) == expected[job["wildcards"]["model"]], job
    for job in plan:
        if job["rule"] in ("prepare_dataset", "make_folds"):
            assert "gpu" not in job["resources"] and job["resources"]["runtime"] == "30", job
    (check,) = [job for job in plan if job["rule"] == "check_gpu"]
    assert (check["resources"]["gpu"], check["resources"]["mem_mb"], check["resources"]["runtime"]) == ("1", "4000", "15")


@pytest.mark.parametrize("profiles", [
    ("--profile", str(SITE_EXAMPLE), "--jobs", "10"),  # the site profile says nothing of --jobs
    ("--profile", str(SITE_EXAMPLE), "--workflow-profile", str(WORKFLOW_PROFILE),
     "--set-resources", "train:runtime=20m", "refit_best:mem_mb=9000"),
], ids=["site-profile-alone", "command-line-set-resources"])
def test_the_gpu_request_is_the_rules_own_and_no_profile_loses_it(tmp_path, profiles):
    """Without profiles/slurm's set-resources (a site profile alone, or a --set-resources on the
    command line, which replaces that whole block) every GPU job still asks for its GPU."""
    data = write_image_folder(tmp_path / "images", n_classes=3, per_class=20)
    config = write_config(tmp_path / "config.yaml", tiny_config(data, grid={"learning_rate": [0.001]}))
    work = tmp_path / "work"
    work.mkdir()
    plan = planned_jobs(run_snakemake(work, config, "-n", *profiles).stdout)
    gpu_jobs = [job for job in plan if job["rule"] in ("check_gpu", "train", "refit_best")]
    assert {job["rule"] for job in gpu_jobs} == {"check_gpu", "train", "refit_best"}
    for job in gpu_jobs:
        assert job["resources"]["gpu"] == "1", job


@pytest.mark.parametrize("image_size", [32, 256])
def test_training_jobs_ask_for_memory_by_model_and_by_the_size_of_the_data(tmp_path, image_size):
    """Memory is asked for once images.npy exists: 4 GB (model A) or 8 GB (model B) plus twice
    the array (loaded whole, and a pinned copy where it does not fit in the GPU), per attempt."""
    data = write_image_folder(tmp_path / "images", n_classes=3, per_class=20)
    config = write_config(tmp_path / "config.yaml", tiny_config(
        data, image_size=image_size, models={"model_a": {}, "model_b": {"pretrained": "none"}},
        grid={"model": ["model_a", "model_b"], "learning_rate": [0.001]}))
    work = tmp_path / "work"
    work.mkdir()
    run_snakemake(work, config, "--cores", "1", "results/data/images.npy", "results/data/folds.tsv")
    array_bytes = (work / "results" / "data" / "images.npy").stat().st_size
    assert array_bytes >= 60 * image_size**2 * 3
    result = run_snakemake(work, config, "-n", "--profile", str(SITE_EXAMPLE),
                           "--workflow-profile", str(WORKFLOW_PROFILE))
    jobs = [job for job in planned_jobs(result.stdout + result.stderr) if job["rule"] in ("train", "refit_best")]
    assert {job["rule"] for job in jobs} == {"train", "refit_best"}
    for job in jobs:
        base = {"model_a": 4000, "model_b": 8000}[job["wildcards"]["model"]]
        assert job["resources"]["mem_mb"] == str(base + math.ceil(2 * array_bytes / 1e6)), job


@pytest.mark.parametrize("per_class", [20, 40])
def test_the_data_step_asks_for_memory_by_the_number_and_size_of_the_images(tmp_path, per_class):
    # 1 GB plus the prepared array (files x image_size^2 x 3 bytes): 3 classes at 500 px make
    # 45 MB a class folder of 20 images, 90 MB of 40.
    data = write_image_folder(tmp_path / "images", n_classes=3, per_class=per_class)
    config = write_config(tmp_path / "config.yaml", tiny_config(data, image_size=500))
    work = tmp_path / "work"
    work.mkdir()
    result = run_snakemake(work, config, "-n", "--profile", str(SITE_EXAMPLE),
                           "--workflow-profile", str(WORKFLOW_PROFILE), "results/data/images.npy")
    job, = [job for job in planned_jobs(result.stdout + result.stderr) if job["rule"] == "prepare_dataset"]
    assert job["resources"]["mem_mb"] == str(1000 + 3 * per_class * 500 * 500 * 3 // 10**6)


def test_one_job_per_grid_point_asks_for_one_gpu_and_the_time_of_all_its_folds(tmp_path):
    """training.folds_per_job: all. One train job per grid point (the same rule as one per fold),
    with a GPU and memory as a fold's and a time limit for all its folds, per model."""
    data = write_image_folder(tmp_path / "images", n_classes=3, per_class=20)
    config = write_config(tmp_path / "config.yaml", tiny_config(
        data, models={"model_a": {}, "model_b": {"pretrained": "none"}}, training={"folds_per_job": "all"},
        grid={"model": ["model_a", "model_b"], "learning_rate": [0.001]}))
    work = tmp_path / "work"
    work.mkdir()
    result = run_snakemake(work, config, "-n", "--profile", str(SITE_EXAMPLE),
                           "--workflow-profile", str(WORKFLOW_PROFILE))
    plan = planned_jobs(result.stdout + result.stderr)
    point_jobs = [job for job in plan if job["rule"] == "train"]
    assert all("fold" not in job["wildcards"] for job in point_jobs)
    expected = {"model_a": ("<TBD>", "120"), "model_b": ("<TBD>", "240")}  # attempt 1: MB, minutes
    assert sorted(job["wildcards"]["model"] for job in point_jobs) == sorted(expected)
    for job in point_jobs:
        resources = job["resources"]
        assert resources["gpu"] == "1" and resources["slurm_account"] == "myproject", job
        assert (resources["mem_mb"], resources["runtime"]) == expected[job["wildcards"]["model"]], job
