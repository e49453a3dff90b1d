"""A finished run driven from a copy of the code at another path reruns nothing, and the records
of runs finished while the rules passed their script as a param are brought up to date
(cvgrid.records) without rerunning anything, while a real change still reruns."""

from __future__ import annotations

import base64
import json
import shlex
import shutil
from pathlib import Path

import pytest

from conftest import REPO, run_snakemake, write_config
from cvgrid.records import NEW_SCRIPT_FIELD, OLD_SCRIPT_FIELD, migrate_script_params, migrated_record

# make_folds's record as the code before this change wrote it (main at 4e3079c, Snakemake 9.27.1,
# the checkout at /tmp/s30m/oldcode; conda_env and input_checksums left out here).
OLD_MAKE_FOLDS = {
    "rule": "make_folds",
    "input": ["results/data/index.tsv"],
    "log": ["logs/results/make_folds.log"],
    "shellcmd": "python /tmp/s30m/oldcode/scripts/make_folds.py --index results/data/index.tsv --folds 2"
    " --repeats 1 --seed 42 --validation-fraction 0.1  --out results/data/folds.tsv"
    " > logs/results/make_folds.log 2>&1",
    "params": ["''", "'/tmp/s30m/oldcode/scripts/make_folds.py'", "0.1", "1", "2", "42"],
    "code": "python {params.script:q} --index {input.index:q} --folds {params.folds} --repeats {params.repeats}"
    " --seed {params.seed} --validation-fraction {params.validation} {params.groups} --out {output:q}"
    " > {log:q} 2>&1",
    "record_format_version": 6,
    "software_stack_hash": "d41d8cd98f00b204e9800998ecf8427e",
    "job_hash": 8764064297989,
    "starttime": 1796544154.182223,
    "endtime": 1796544156.3455787,
    "incomplete": False,
    "external_jobid": None,
}
MAKE_FOLDS_NOW = OLD_MAKE_FOLDS["code"].replace(OLD_SCRIPT_FIELD, NEW_SCRIPT_FIELD)


def test_the_old_script_param_goes_and_nothing_else_changes():
    new = migrated_record(OLD_MAKE_FOLDS, MAKE_FOLDS_NOW, "make_folds.py")
    assert new["params"] == ["''", "0.1", "1", "2", "42"]  # still sorted, as Snakemake compares them
    assert new["code"] == MAKE_FOLDS_NOW
    assert {k: v for k, v in new.items() if k not in ("params", "code")} == {
        k: v for k, v in OLD_MAKE_FOLDS.items() if k not in ("params", "code")
    }


@pytest.mark.parametrize(
    "change",
    [
        {"code": MAKE_FOLDS_NOW},  # already of today's form
        {"code": OLD_MAKE_FOLDS["code"] + " --other"},  # another template: reruns
        {"record_format_version": 5},  # another Snakemake's format
        {"params": ["''", "0.1", "1", "2", "42"]},  # no script param
        {"params": ["''", "'scripts/make_folds.py'", "0.1", "1", "2", "42"]},  # not absolute
        {"params": ["''", "'/old/scripts/prepare_dataset.py'", "0.1", "1", "2", "42"]},  # another script
        {"params": ["''", "'/old/tools/make_folds.py'", "0.1", "1", "2", "42"]},  # not in scripts/
        {"params": ["''", "'/a/scripts/make_folds.py'", "'/b/scripts/make_folds.py'", "0.1", "2"]},  # two
        {"params": None},
    ],
)
def test_a_record_of_any_other_form_is_left_alone(change):
    assert migrated_record(OLD_MAKE_FOLDS | change, MAKE_FOLDS_NOW, "make_folds.py") is None


def test_a_rule_whose_script_was_always_a_resource_is_left_alone():
    # train's template never changed: there is no old form to recognise.
    template = "python {resources.script:q} --images {input.images:q}"
    record = {"rule": "train", "code": template, "record_format_version": 6,
              "params": ["'/x/scripts/train.py'", "'fp32'"]}
    assert migrated_record(record, template, "train.py") is None


def record_path(metadata: Path, output: str) -> Path:
    """Where Snakemake's file backend keeps the record of an output (urlsafe base64 of its path;
    a name longer than the file system allows is cut into folders, each part but the last
    starting with '@')."""
    name = base64.urlsafe_b64encode(output.encode()).decode()
    parts = [name[i: i + 254] for i in range(0, len(name), 254)]
    return metadata.joinpath(*["@" + p for p in parts[:-1]], parts[-1])


def write_records(metadata: Path, records: dict[str, dict]) -> dict[str, Path]:
    paths = {}
    for output, record in records.items():
        paths[output] = record_path(metadata, output)
        paths[output].parent.mkdir(parents=True, exist_ok=True)
        paths[output].write_text(json.dumps(record))
    return paths


def test_records_in_a_folder_are_rewritten_and_counted(tmp_path):
    state = tmp_path / ".snakemake"
    metadata = state / "metadata"
    # One in a '@' folder, with a name as long as Snakemake makes them (254 characters).
    deep = "results/" + "x" * 363 + "/folds.tsv"
    paths = write_records(metadata, {
        "results/data/folds.tsv": OLD_MAKE_FOLDS,
        deep: OLD_MAKE_FOLDS,
        "results/compare/data/folds.tsv": OLD_MAKE_FOLDS | {"params": ["'/x/scripts/make_folds.py'", "3"],
                                                            "code": "python {params.script:q} --older"},
    })
    paths["results/data/folds.tsv"].chmod(0o660)
    broken = metadata / "half-written"
    broken.write_text('{"rule": "make_folds", "code": "python {params.script:q}')
    rules = {"make_folds": (MAKE_FOLDS_NOW, "make_folds.py")}

    assert migrate_script_params(state, rules) == (2, True)
    assert paths[deep].parent.name.startswith("@") and len(paths[deep].name) == 254
    for output in ("results/data/folds.tsv", deep):
        assert json.loads(paths[output].read_text()) == migrated_record(OLD_MAKE_FOLDS, MAKE_FOLDS_NOW, "make_folds.py")
    assert paths["results/data/folds.tsv"].stat().st_mode & 0o777 == 0o660
    left = json.loads(paths["results/compare/data/folds.tsv"].read_text())
    assert left["code"] == "python {params.script:q} --older"  # another template: left alone
    assert broken.read_text().endswith("{params.script:q}")
    assert sorted(p.name for p in metadata.rglob("*") if p.is_file()) == sorted(
        p.name for p in [*paths.values(), broken]
    )  # no temporary file left
    assert migrate_script_params(state, rules) == (0, False)  # once only
    assert migrate_script_params(tmp_path / "no-such-folder", rules) == (0, False)


def test_records_are_left_alone_while_a_run_holds_the_directory(tmp_path):
    """A run of an older checkout would read them as changed params and run those steps again."""
    state = tmp_path / ".snakemake"
    paths = write_records(state / "metadata", {"results/data/folds.tsv": OLD_MAKE_FOLDS})
    (state / "locks").mkdir()
    (state / "locks" / "0.input.lock").write_text("results/data/index.tsv\n")
    rules = {"make_folds": (MAKE_FOLDS_NOW, "make_folds.py")}
    assert migrate_script_params(state, rules) == (1, False)
    assert json.loads(paths["results/data/folds.tsv"].read_text()) == OLD_MAKE_FOLDS
    (state / "locks" / "0.input.lock").unlink()  # the run ended
    assert migrate_script_params(state, rules) == (1, True)


# --- the workflow ------------------------------------------------------------------------------

# The rules that passed their script as a param before (train and refit_best had it as a
# resource already).
SCRIPT_ALWAYS_A_RESOURCE = {"train", "refit_best"}


def copy_code(destination: Path) -> Path:
    """What a second clone of the repository holds for a run: the workflow, the scripts and the
    environment files. Returns its Snakefile."""
    for part in ("workflow", "scripts", "envs", "config"):
        shutil.copytree(REPO / part, destination / part, ignore=shutil.ignore_patterns("__pycache__"))
    return destination / "workflow" / "Snakefile"


def copy_run(tiny_run, destination: Path) -> Path:
    """A copy of the shared finished tiny run (times kept) with its config: the config file."""
    shutil.copytree(tiny_run.work, destination / "work", symlinks=True)
    return write_config(destination / "config.yaml", tiny_run.settings)


def records(work: Path) -> dict[Path, dict]:
    return {path: json.loads(path.read_text())
            for path in (work / ".snakemake" / "metadata").rglob("*") if path.is_file()}


def put_back_into_the_old_form(work: Path, old_checkout: str) -> int:
    """Rewrite the records of a run as the code before this change wrote them: the script path
    (of a checkout at `old_checkout`) among the sorted params, and the template with the script
    as a param. Returns how many records it rewrote."""
    count = 0
    for path, record in records(work).items():
        code = record.get("code") or ""
        if record["rule"] in SCRIPT_ALWAYS_A_RESOURCE or NEW_SCRIPT_FIELD not in code:
            continue
        script = Path(shlex.split(record["shellcmd"])[1]).name  # python <checkout>/scripts/x.py ...
        old_param = repr(f"{old_checkout}/scripts/{script}")
        record |= {"code": code.replace(NEW_SCRIPT_FIELD, OLD_SCRIPT_FIELD),
                   "params": sorted(record["params"] + [old_param])}
        path.write_text(json.dumps(record))
        count += 1
    return count


def planned(result) -> str:
    return result.stdout + result.stderr


@pytest.mark.slow
def test_a_finished_run_driven_from_a_checkout_elsewhere_plans_nothing(tiny_run, tmp_path):
    config = copy_run(tiny_run, tmp_path)
    snakefile = copy_code(tmp_path / "second-clone")
    result = run_snakemake(tmp_path / "work", config, "-n", snakefile=snakefile)
    output = planned(result)
    assert f"Base directory: {snakefile.parent}" in output  # the copy, not this checkout
    assert "Nothing to be done" in output, output
    assert "records of finished jobs updated" not in output


@pytest.mark.slow
def test_records_of_the_old_form_are_migrated_and_a_real_change_still_reruns(tiny_run, tmp_path):
    config = copy_run(tiny_run, tmp_path)
    work = tmp_path / "work"
    written = records(work)  # as the code of today writes them
    rewritten = put_back_into_the_old_form(work, "/home/someone/old-clone")
    assert rewritten >= 10  # prepare_dataset's 3, make_folds, the statistics, the plots, ...
    assert {written[p]["rule"] for p in written if written[p] != json.loads(p.read_text())} >= {
        "prepare_dataset", "make_folds", "summarize_cv", "cv_statistics"}

    # While a run holds the directory (an older checkout's, say) they stay: the steps rerun.
    lock = work / ".snakemake" / "locks" / "0.input.lock"
    lock.write_text("results/data/index.tsv\n")
    output = planned(run_snakemake(work, config, "-n"))
    assert f"{rewritten} Snakemake records of finished jobs hold the script path as a param" in output, output
    assert "rule prepare_dataset:" in output and "Params have changed" in output and "rule train:" in output
    lock.unlink()

    output = planned(run_snakemake(work, config, "-n"))
    assert f"{rewritten} Snakemake records of finished jobs updated" in output, output
    assert "Nothing to be done" in output, output
    assert records(work) == written  # exactly what today's code writes, nothing else changed

    # A real change of a data step's param after the migration reruns the data steps and training.
    changed = write_config(tmp_path / "changed.yaml", tiny_run.settings | {"image_size": 24})
    output = planned(run_snakemake(work, changed, "-n"))
    assert "records of finished jobs updated" not in output
    assert "rule prepare_dataset:" in output and "before: 32 now: 24" in output, output
    assert "rule train:" in output
