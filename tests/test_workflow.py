"""The workflow through the real `snakemake` CLI: the reference plan, lint, a whole tiny run
with its report, config validation, and the download rule on a local archive."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import pandas as pd
import pytest
import yaml

from conftest import REPO, build_archive, tiny_config, write_config, write_image_folder

GRID_KEYS = ["model", "batch_size", "learning_rate", "augmentation"]


def job_counts(output: str) -> dict[str, int]:
    """The first 'Job stats' table of a snakemake run: rule -> count."""
    match = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal\s+(\d+)", output, re.S)
    assert match, f"no job stats table in:\n{output}"
    counts = {}
    for line in match[1].splitlines():
        name, count = line.split()
        counts[name] = int(count)
    assert sum(counts.values()) == int(match[2])
    return counts


@pytest.mark.real_data
def test_reference_config_plans_180_training_jobs(real_data_dir, tmp_path, snakemake):
    result = snakemake(tmp_path, REPO / "config" / "config.yaml", "-n", "--config", f"data_dir={real_data_dir}")
    counts = job_counts(result.stdout + result.stderr)
    assert counts["train"] == 180
    assert counts["prepare_dataset"] == 1 and counts["make_folds"] == 1
    assert "fetch_dataset" not in counts  # the given folder is used, nothing downloaded
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    grid = config["grid"]
    points = len(grid["model"]) * len(grid["batch_size"]) * len(grid["learning_rate"]) * len(grid["augmentation"])
    assert counts["train"] == points * config["cv"]["folds"] * config["cv"]["repeats"]


def test_lint_finds_nothing(tmp_path, snakemake):
    result = snakemake(tmp_path, REPO / "config" / "config.yaml", "--lint", check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Lints for" not in output, output


@pytest.fixture(scope="module")
def finished_run(tiny_run):
    """The shared whole run (conftest.tiny_run) and its report."""
    return {"work": tiny_run.work, "config": tiny_run.config, "first": tiny_run.first,
            "report": tiny_run.report, "settings": tiny_run.settings}


def test_tiny_grid_runs_end_to_end(finished_run):
    work, config = finished_run["work"], finished_run["settings"]
    counts = job_counts(finished_run["first"].stdout + finished_run["first"].stderr)
    assert counts["train"] == 4
    summary = pd.read_csv(work / "results" / "cv_summary.tsv", sep="\t")
    assert len(summary) == 2
    assert set(GRID_KEYS + ["mean_accuracy", "acc_std_x2", "folds"]) <= set(summary.columns)
    assert (summary["folds"] == 2).all()
    assert sorted(summary["learning_rate"]) == sorted(config["grid"]["learning_rate"])
    assert summary["mean_accuracy"].is_monotonic_decreasing

    metrics_files = sorted((work / "results" / "train").rglob("metrics.json"))
    assert len(metrics_files) == 4
    by_point = {}
    for path in metrics_files:
        for name in ("history.tsv", "predictions.tsv"):
            assert (path.parent / name).stat().st_size > 0, path.parent / name
        metrics = json.loads(path.read_text())
        c = metrics["config"]
        assert c["max_epochs"] == 2 and c["batch_size"] == 16 and metrics["epochs_run"] <= 2
        assert len(pd.read_csv(path.parent / "history.tsv", sep="\t")) == metrics["epochs_run"]
        by_point.setdefault(c["learning_rate"], []).append(metrics["accuracy"])
    for row in summary.itertuples():
        assert row.mean_accuracy == pytest.approx(sum(by_point[row.learning_rate]) / 2)
    # The other metrics, from each fold's predictions.tsv, in the same tables.
    from sklearn.metrics import balanced_accuracy_score, log_loss

    folds = pd.read_csv(work / "results" / "cv_folds.tsv", sep="\t")
    assert {"balanced_accuracy", "macro_f1", "log_loss", "recall_class_0", "recall_class_2"} <= set(folds.columns)
    for row in folds.itertuples():
        fold_dir = next(p.parent for p in metrics_files if json.loads(p.read_text())["config"]["learning_rate"]
                        == row.learning_rate and p.parent.name == f"fold~{row.fold}")
        predictions = pd.read_csv(fold_dir / "predictions.tsv", sep="\t")
        assert row.balanced_accuracy == pytest.approx(balanced_accuracy_score(predictions["true"], predictions["predicted"]))
        # Every class's probability is recorded, so log-loss is available for a new run.
        probabilities = predictions[[f"probability_{k}" for k in range(3)]].to_numpy()
        assert probabilities.sum(axis=1) == pytest.approx(1.0, abs=1e-5)
        assert (probabilities.argmax(axis=1) == predictions["predicted"]).all()
        assert row.log_loss == pytest.approx(log_loss(predictions["true"], probabilities, labels=[0, 1, 2]), rel=1e-4)
    assert {"mean_balanced_accuracy", "balanced_accuracy_std_x2", "mean_recall_class_1"} <= set(summary.columns)
    # The two folds' test sets together are every image once (per grid point).
    n_test = [json.loads(p.read_text())["n_test"] for p in metrics_files]
    assert sum(n_test) == 2 * 60

    for svg in ("heatmap_model_a.svg", "fold_accuracies.svg"):
        text = (work / "results" / "plots" / svg).read_text()
        assert "<svg" in text, svg
    # Every training job has its log and its benchmark (wherever the rules put them).
    train_logs = [p for p in (work / "logs").rglob("*.log") if "train" in p.relative_to(work / "logs").parts[:-1]
                  or "train" in str(p.relative_to(work / "logs"))]
    assert len([p for p in train_logs if "model~" in str(p)]) == 4, train_logs
    assert all(p.stat().st_size > 0 for p in train_logs)
    benchmarks = [p for p in (work / "benchmarks").rglob("*.tsv") if "model~" in str(p)]
    assert len(benchmarks) == 4, benchmarks
    prepared = json.loads((work / "results" / "data" / "prepare_report.json").read_text())
    assert prepared["images"] == 60
    assert prepared["ignored_files"] == ["class_1/.DS_Store"]


def report_results(html: str) -> dict[str, dict]:
    """The results embedded in a Snakemake report: file name -> entry (caption, data_uri, ...)."""
    match = re.search(r"var results = (\{.*?\});\n", html, re.S)
    assert match, "no embedded results in the report"
    return {entry["filename"]: entry for entry in json.loads(match[1]).values()}


def test_report_holds_the_summary_and_the_plots(finished_run):
    work = finished_run["work"]
    html = (work / "report.html").read_text()
    results = report_results(html)
    for name in ("cv_summary.tsv", "heatmap_model_a.svg", "fold_accuracies.svg"):
        assert name in results, sorted(results)
        assert re.sub(r"<[^>]+>", "", results[name]["caption"]).strip(), f"{name} has no caption"
    encoded = results["cv_summary.tsv"]["data_uri"].split("base64,", 1)[1]
    assert base64.b64decode(encoded) == (work / "results" / "cv_summary.tsv").read_bytes()
    svg = base64.b64decode(results["heatmap_model_a.svg"]["data_uri"].split("base64,", 1)[1])
    assert svg == (work / "results" / "plots" / "heatmap_model_a.svg").read_bytes()


def test_report_text_renders_without_errors(finished_run):
    """The workflow description is reStructuredText: a broken link shows as an error box."""
    html = (finished_run["work"] / "report.html").read_text()
    report_output = finished_run["report"].stdout + finished_run["report"].stderr
    assert "(ERROR/" not in report_output and "(WARNING/" not in report_output, report_output
    assert "System Message" not in html


def test_a_second_run_has_nothing_to_do(finished_run):
    from conftest import run_snakemake

    work = finished_run["work"]
    before = {p: p.stat().st_mtime_ns for p in (work / "results").rglob("*") if p.is_file()}
    again = run_snakemake(work, finished_run["config"], "--cores", "2")
    output = again.stdout + again.stderr
    assert "Nothing to be done" in output, output
    assert "rule train" not in output
    assert {p: p.stat().st_mtime_ns for p in (work / "results").rglob("*") if p.is_file()} == before


def test_each_fold_writes_its_curves_for_tensorboard_beside_its_history(finished_run):
    """training.tensorboard (default on): `tensorboard --logdir results/train` shows every fold's
    history.tsv, epoch by epoch."""
    from cvgrid.curves import read_curves

    histories = sorted((finished_run["work"] / "results" / "train").rglob("history.tsv"))
    assert len(histories) == 4
    for path in histories:
        assert [p.name.startswith("events.out.tfevents.") for p in path.parent.glob("events.*")] == [True], path
        history = pd.read_csv(path, sep="\t")
        curves = read_curves(path.parent)
        assert [step for step, _ in curves["val_accuracy"]] == history["epoch"].tolist()
        assert [v for _, v in curves["train_loss"]] == pytest.approx(history["train_loss"].tolist())


def test_curves_switched_off_retrain_nothing_and_a_fold_trained_then_writes_none(finished_run, tmp_path):
    from conftest import run_snakemake

    settings = json.loads(json.dumps(finished_run["settings"]))
    settings["training"]["tensorboard"] = False
    configfile = write_config(tmp_path / "config.yaml", settings)
    plan = run_snakemake(finished_run["work"], configfile, "-n")
    output = plan.stdout + plan.stderr
    assert "Nothing to be done" in output or "train" not in job_counts(output), output
    # A copy of the run that lost one fold's results: only that fold trains, and writes no curves.
    work = tmp_path / "work"
    shutil.copytree(finished_run["work"], work, symlinks=True)
    fold = sorted((work / "results" / "train").rglob("metrics.json"))[0].parent
    for path in fold.iterdir():
        path.unlink()
    # The fold's metrics.json as the target: the gather reads the jobs through a list file.
    result = run_snakemake(work, configfile, "--cores", "2", str((fold / "metrics.json").relative_to(work)))
    assert job_counts(result.stdout + result.stderr)["train"] == 1
    assert (fold / "history.tsv").stat().st_size > 0
    assert not list(fold.glob("events.*"))


def test_another_metric_reruns_the_statistics_not_the_training_and_every_step_uses_it(finished_run, tmp_path):
    """statistics.metric: balanced_accuracy on a copy of the finished run retrains no CV job; the
    ranking, the statistics, the written summary and the refit's model.json use and name it."""
    from conftest import run_snakemake

    work = tmp_path / "work"
    shutil.copytree(finished_run["work"], work, symlinks=True)
    settings = json.loads(json.dumps(finished_run["settings"]))
    settings["statistics"] = {"metric": "balanced_accuracy"}
    configfile = write_config(tmp_path / "config.yaml", settings)
    result = run_snakemake(work, configfile, "--cores", "2")
    counts = job_counts(result.stdout + result.stderr)
    assert "train" not in counts and counts["summarize_cv"] == 1 and counts["cv_statistics"] == 1
    summary = pd.read_csv(work / "results" / "cv_summary.tsv", sep="\t")
    assert summary["mean_balanced_accuracy"].is_monotonic_decreasing
    selected = pd.read_csv(work / "results" / "stats" / "selected.tsv", sep="\t")
    assert selected.loc[0, "raw_balanced_accuracy"] == pytest.approx(summary.loc[0, "mean_balanced_accuracy"])
    assert "mean_balanced_accuracy" in pd.read_csv(work / "results" / "stats" / "compare_to_best.tsv", sep="\t")
    page = (work / "results" / "stats" / "summary.html").read_text()
    assert "ranked and compared by <b>balanced accuracy</b>" in page and "mean test balanced accuracy" in page
    model = json.loads((work / "results" / "final" / "model_a" / "model.json").read_text())
    assert model["cv_estimate"]["metric"] == "balanced_accuracy"
    assert model["grid_point"]["learning_rate"] == summary.loc[0, "learning_rate"]


def test_choosing_the_cheapest_contender_refits_from_the_decision_and_retrains_no_cv_job(finished_run, tmp_path):
    from conftest import run_snakemake

    settings = dict(finished_run["settings"], final={"choose": "cheapest_contender", "cost": "work"})
    configfile = write_config(tmp_path / "cheapest.yaml", settings)
    plan = run_snakemake(finished_run["work"], configfile, "-n", "-p")
    output = plan.stdout + plan.stderr
    counts = job_counts(output)
    assert "train" not in counts and "model_costs" not in counts, counts  # nothing of the CV is redone
    assert counts["cv_statistics"] == 1 and counts["refit_best"] == 1, counts
    assert "--choose cheapest_contender --cost work" in output
    assert "--decision results/stats/decision.tsv" in output


def test_a_new_thread_count_checkpoint_interval_device_or_curves_switch_retrains_nothing(finished_run, tmp_path):
    """The training rule's params hold only what changes a result (the point's settings, the
    precision): the finished run, planned again with other settings that do not, trains nothing
    (Snakemake reruns a job whose params text changed)."""
    from conftest import run_snakemake

    settings = json.loads(json.dumps(finished_run["settings"]))
    training = settings.setdefault("training", {})
    training.update(threads=int(training.get("threads", 1)) + 1, checkpoint_seconds=7, device="cpu", tensorboard=False,
                    parallel_folds=2)
    configfile = write_config(tmp_path / "config.yaml", settings)
    result = run_snakemake(finished_run["work"], configfile, "-n")
    output = result.stdout + result.stderr
    assert "Nothing to be done" in output, output  # no training job, and no refit either
    # One fold per job (the tiny run's): nothing to train at the same time, and the user is told.
    assert "training.parallel_folds 2 has no effect with training.folds_per_job 1" in output, output


def test_parallel_folds_reach_the_training_job_of_a_grid_point(tmp_path, snakemake, image_folder):
    """training.parallel_folds goes to train.py (--parallel-folds) of a job of several folds, and the
    GPU check sizes its memory fit for the folds a job trains at once (3 asked, 2 in a job)."""
    config = tiny_config(image_folder(n_classes=3, per_class=20), training={"folds_per_job": "all", "parallel_folds": 3})
    configfile = write_config(tmp_path / "config.yaml", config)
    work = tmp_path / "work"
    work.mkdir()
    result = snakemake(work, configfile, "--dry-run", "--printshellcmds")
    output = result.stdout + result.stderr
    assert output.count("--parallel-folds 3") == job_counts(output)["train"] == 2, output
    assert "has no effect" not in output
    assert output.count("--models-at-once 2") == job_counts(output)["check_gpu"] == 1, output


def test_the_same_config_resaved_in_another_key_order_plans_nothing(finished_run, tmp_path):
    """A config written by a program (yaml.safe_dump sorts the keys) is the same config: no job
    at all, the data steps included."""
    from conftest import run_snakemake

    def reversed_keys(value):
        if isinstance(value, dict):
            return {key: reversed_keys(value[key]) for key in reversed(list(value))}
        return value

    resaved = tmp_path / "resaved.yaml"
    resaved.write_text(yaml.safe_dump(reversed_keys(finished_run["settings"])))
    assert resaved.read_text() != finished_run["config"].read_text()
    assert yaml.safe_load(resaved.read_text()) == finished_run["settings"]
    result = run_snakemake(finished_run["work"], resaved, "-n")
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout + result.stderr


def test_a_working_directory_moved_with_cp_a_plans_nothing(finished_run, tmp_path):
    from conftest import run_snakemake

    moved = tmp_path / "moved"
    subprocess.run(["cp", "-a", str(finished_run["work"]), str(moved)], check=True)
    result = run_snakemake(moved, finished_run["config"], "-n")
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda c: c["grid"].update(learning_rate=[-1]), ("-1", "learning_rate")),
        (lambda c: c["grid"].update(batch_size=[0]), ("batch_size",)),
        (lambda c: c.update(epochs=3), "epochs"),
        (lambda c: c["training"].update(max_epoch=3), "max_epoch"),
        (lambda c: c["grid"].update(model=["model_a", "model_q"]), "model_q"),
        (lambda c: c["grid"].update(augmentation=["flip"]), "flip"),
        (lambda c: (c["models"].update(model_q={}), c["grid"].update(model=["model_q"])), "model_q"),
        (lambda c: c["cv"].update(folds=1), ("folds", "minimum of 2")),
        (lambda c: c["grid"].update(batch_size=[]), ("batch_size", "should be non-empty")),
        # "none" is the one spelling of "off"; "" is no scheme, and comparing a scheme with itself
        # would train the grid twice.
        (lambda c: c["cv"].update(compare_groups=""), ("compare_groups", "should be non-empty")),
        (lambda c: c["cv"].update(groups="participants", compare_groups="participants"),
         ("cv.compare_groups is 'participants'", "twice")),
        (lambda c: c["training"].update(folds_per_job="some"), ("folds_per_job", "'some'")),
        # 2 folds x 2 repeats: 3 folds per job is no set of folds that wildcards can name.
        (lambda c: (c["cv"].update(repeats=2), c["training"].update(folds_per_job=3)),
         ("training.folds_per_job is 3", "all")),
        (lambda c: c["training"].update(checkpoint_seconds=-1), ("checkpoint_seconds", "-1")),
        (lambda c: c.update(data_dir="/no/such/images"), ("data_dir '/no/such/images' does not exist",)),
    ],
    ids=["negative-learning-rate", "zero-batch-size", "unknown-key", "unknown-training-key",
         "grid-model-not-in-models", "unknown-augmentation", "unregistered-model", "one-fold", "empty-grid",
         "empty-compare-groups", "compare-groups-same-as-groups", "folds-per-job-text", "folds-per-job-3",
         "negative-checkpoint-seconds", "missing-data-dir"],
)
def test_a_bad_config_fails_before_any_job_naming_the_value(tmp_path, snakemake, image_folder, change, named):
    config = tiny_config(image_folder(n_classes=3, per_class=20))
    change(config)
    configfile = write_config(tmp_path / "bad.yaml", config)
    work = tmp_path / "work"
    work.mkdir()
    # Refused while the workflow is read, so a dry run already fails: no job could have started.
    result = snakemake(work, configfile, "--dry-run", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for word in [named] if isinstance(named, str) else named:
        assert word in output, output
    assert "Job stats" not in output and not (work / "results").exists()


def fetch_config(tmp_path, expected_classes, expected_images):
    source = write_image_folder(tmp_path / "upstream", n_classes=3, per_class=20, size=(40, 40), suffix=".JPG")
    archive = build_archive(tmp_path / "archive.zip", source, top="Sign-Language-Digits-Dataset-4b09433ef9d5")
    config = tiny_config("", download={"url": archive.as_uri(), "subdir": "Dataset",
                                       "expected_classes": expected_classes, "expected_images": expected_images})
    return write_config(tmp_path / "fetch.yaml", config)


def test_an_empty_data_dir_downloads_the_archive_and_goes_on(tmp_path, snakemake):
    configfile = fetch_config(tmp_path, 3, 60)
    work = tmp_path / "work"
    work.mkdir()
    result = snakemake(work, configfile, "--cores", "2", "results/data/folds.tsv")
    assert job_counts(result.stdout + result.stderr) == {
        "fetch_dataset": 1, "record_dataset": 1, "prepare_dataset": 1, "make_folds": 1}
    fetched = work / "resources" / "sign-language-digits"
    assert sorted(p.name for p in fetched.iterdir() if not p.name.startswith(".")) == ["class_0", "class_1", "class_2"]
    index = pd.read_csv(work / "results" / "data" / "index.tsv", sep="\t")
    assert len(index) == 60 and index["class_name"].nunique() == 3
    folds = pd.read_csv(work / "results" / "data" / "folds.tsv", sep="\t")
    assert len(folds) == 2 * 60 and set(folds["role"]) == {"train", "validation", "test"}
    # The record of the downloaded images, written in the run, makes nothing run again.
    again = snakemake(work, configfile, "-n", "results/data/folds.tsv")
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout + again.stderr


def test_the_data_steps_follow_the_images_not_the_folders_time(tmp_path, snakemake, image_folder):
    """A copied or re-synced folder (new times, same images) must not retrain finished jobs; an
    image added to a class folder (the top folder's time unchanged) must not be missed."""
    import shutil

    data = image_folder(n_classes=3, per_class=20)
    work = tmp_path / "work"
    work.mkdir()
    configfile = write_config(tmp_path / "config.yaml", tiny_config(data, cv={"validation_fraction": 0.2}))
    snakemake(work, configfile, "--cores", "1", "results/data/folds.tsv")
    index = work / "results" / "data" / "index.tsv"
    assert len(pd.read_csv(index, sep="\t")) == 60

    # The same images in a new folder, every time new: nothing to do.
    copy = shutil.copytree(data, tmp_path / "copy", copy_function=shutil.copyfile)
    configfile = write_config(tmp_path / "config.yaml", tiny_config(copy, cv={"validation_fraction": 0.2}))
    quiet = snakemake(work, configfile, "-n", "results/data/folds.tsv")
    assert "Nothing to be done" in quiet.stdout + quiet.stderr, quiet.stdout + quiet.stderr
    assert f"data_dir {copy} holds the images prepared from {data}" in quiet.stdout + quiet.stderr
    record = json.loads((work / "results" / "data" / "dataset_fingerprint.json").read_text())
    assert record["folder"] == str(copy) and record["files"] == 60  # what the data steps read next

    # One more image in a class folder: the data steps run again, say why, and use it.
    top_time = copy.stat().st_mtime_ns
    shutil.copyfile(copy / "class_1" / "img_000.jpg", copy / "class_1" / "img_new.jpg")
    assert copy.stat().st_mtime_ns == top_time  # what Snakemake alone would have judged by
    result = snakemake(work, configfile, "--cores", "1", "results/data/folds.tsv")
    output = result.stdout + result.stderr
    assert f"data_dir {copy} has changed since the images were last prepared (60 files before" in output
    assert job_counts(output) == {"prepare_dataset": 1, "make_folds": 1}
    table = pd.read_csv(index, sep="\t")
    assert len(table) == 61 and "class_1/img_new.jpg" in set(table["file"])
    assert len(pd.read_csv(work / "results" / "data" / "folds.tsv", sep="\t")) == 2 * 61  # a row per fold

    # And out again.
    (copy / "class_1" / "img_new.jpg").unlink()
    snakemake(work, configfile, "--cores", "1", "results/data/folds.tsv")
    assert len(pd.read_csv(index, sep="\t")) == 60


def test_an_archive_with_other_counts_stops_the_workflow(tmp_path, snakemake):
    configfile = fetch_config(tmp_path, 10, 2062)
    work = tmp_path / "work"
    work.mkdir()
    result = snakemake(work, configfile, "--cores", "2", "results/data/folds.tsv", check=False)
    assert result.returncode != 0
    assert not (work / "resources" / "sign-language-digits").exists()
    assert not (work / "results" / "data" / "index.tsv").exists()
    log = (work / "logs" / "fetch_dataset.log").read_text()
    assert "expected 10 and 2062" in log


def test_an_offline_download_tells_the_user_what_to_do(tmp_path, snakemake):
    nowhere = (tmp_path / "offline" / "archive.zip").as_uri()
    configfile = write_config(tmp_path / "offline.yaml", tiny_config("", download={
        "url": nowhere, "subdir": "Dataset", "expected_classes": 3, "expected_images": 60}))
    work = tmp_path / "work"
    work.mkdir()
    result = snakemake(work, configfile, "--cores", "1", "results/data/folds.tsv", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    # On the terminal, not only in the log: what failed and how to go on.
    assert f"cannot download the data set {nowhere}" in output and "data_dir=/path/to/Dataset" in output
    assert "data_dir=/path/to/Dataset" in (work / "logs" / "fetch_dataset.log").read_text()
    assert not (work / "resources" / "sign-language-digits").exists()
