import json
import math
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import Paramspace, validate

# The library behind the scripts. What the workflow plans with (cvgrid.grid, cvgrid.plan) is
# torch-free, which keeps dry runs fast (tests/test_structure.py checks it).
SCRIPTS = str(Path(workflow.basedir).parent / "scripts")
sys.path.insert(0, SCRIPTS)
from cvgrid.grid import (  # noqa: E402
    AXES, ConfigError, architecture, decide_max_repeats, fold_keys, grid_axes, grid_table, job_unit, listed_grid,
    point_settings, sample_note, sampled_ranges, without_later_defaults,
)
from cvgrid.io import write_json  # noqa: E402
from cvgrid.plan import folder_record, plan_weights, record_folder  # noqa: E402
from cvgrid.race import race_after_folds, survivors  # noqa: E402
from cvgrid.records import migrate_script_params  # noqa: E402
from cvgrid.weights import WeightsError  # noqa: E402

validate(config, schema="../schemas/config.schema.yaml")
try:
    # One row per grid point: the product of the grid's lists, or the points grid.sample draws.
    TABLE = grid_table(config)
    GRID = Paramspace(TABLE)
    # Pretrained weights: {model: {"path", "url"}} and {file name: {"url", "models"}}, one
    # download per file (rules/weights.smk).
    WEIGHTS, FETCH = plan_weights(config)
    # What one training job trains (rules/train.smk): a fold, the folds of one repeat or those
    # of the whole grid point.
    JOB_UNIT = job_unit(config)
    decide_max_repeats(config)  # refuses a cv.decide it cannot work with (rules/decide.smk)
    # cv.race: the folds every point trains before the race drops any (None: no race; rules/race.smk).
    RACE = race_after_folds(config)
except (ConfigError, WeightsError) as error:
    raise WorkflowError(f"config: {error}") from None
if "sample" in TABLE.attrs:
    # Sampled values meet the schema's limits of listed ones (a weight decay at most 1, ...).
    validate(listed_grid(config, TABLE), schema="../schemas/config.schema.yaml")
    if workflow.is_main_process:
        logger.info(sample_note(TABLE))
if JOB_UNIT == "fold" and config["training"]["parallel_folds"] > 1 and workflow.is_main_process:
    # Nothing to train at the same time in a job of one fold: said, not an error (changes no result).
    logger.warning(
        f"training.parallel_folds {config['training']['parallel_folds']} has no effect with "
        "training.folds_per_job 1 (one fold per job): set folds_per_job to all or cv.folds"
    )
COMPARE = config["cv"]["compare_groups"] != "none"  # the grid also runs under a second scheme
if COMPARE and config["cv"]["compare_groups"] == config["cv"]["groups"]:
    raise WorkflowError(
        f"config: cv.compare_groups is {config['cv']['compare_groups']!r}, the scheme of cv.groups;"
        " it would train the same grid twice (set it to none, or to another scheme)"
    )

# The decision's tables (contenders, BBC-CV) are computed on accuracy so far.
if config["final"]["choose"] != "best" and config["statistics"]["metric"] != "accuracy":
    raise WorkflowError(
        f"config: final.choose is {config['final']['choose']!r} with statistics.metric"
        f" {config['statistics']['metric']!r}; choosing other than the best is built on accuracy only"
        " so far (set statistics.metric: accuracy, or final.choose: best)"
    )

HP = GRID.wildcard_pattern  # model~{model}/batch_size~{batch_size}/... one folder per axis
FOLD = "repeat~{repeat}/fold~{fold}"
GRID_AXES = grid_axes(config)  # the axes of this grid, in folder order
# A sampled grid's ranged axes ({axis: {distribution: [low, high]}}, {} with lists only); None
# for a grid of lists. The statistics and the heatmap step get it explicitly: a sampled grid
# shows trends over its ranges, level effects across points and a scatter for the heatmap.
SAMPLED_RANGES = sampled_ranges(config)
SAMPLED_OPTION = (
    "" if SAMPLED_RANGES is None else f"--sampled-ranges {shlex.quote(json.dumps(SAMPLED_RANGES))}"
)
for axis in config["plots"].get("heatmap_axes") or []:
    if axis not in GRID_AXES or axis == "model":
        raise WorkflowError(
            f"config: plots.heatmap_axes names {axis!r}, which is not an axis of the grid"
            f" (axes: {[a for a in GRID_AXES if a != 'model']})"
        )


def axis_constraint(axis):
    """The wildcard constraint of a grid axis: its names, or the form of its numbers."""
    if AXES[axis] is str:
        return "|".join(re.escape(str(value)) for value in config["grid"][axis])
    return r"\d+" if AXES[axis] is int else r"[0-9.eE+-]+"


workflow.global_wildcard_constraints(
    **{axis: axis_constraint(axis) for axis in GRID_AXES},
    repeat=r"\d+",
    fold=r"\d+",
    # results/ holds the CV under cv.groups; results/compare/ the same grid under cv.compare_groups.
    root="results|results/compare",
)


def script_path(name):
    """Absolute path of a command-line script in scripts/ (rules call them with explicit arguments).
    Rules take it as a resource (`resources: script=...`, `{resources.script:q}`), never as a
    param: Snakemake records params, and a checkout at another path would rerun every step."""
    return os.path.join(SCRIPTS, name)


def migrate_script_records():
    """Records of jobs finished while the rules passed their script as a param: rewritten into
    today's form, once, so that moving the script to resources reruns nothing (cvgrid.records;
    the Snakefile calls this after its includes, when every rule exists). Only the main process
    writes records. Written for the record format of the pinned Snakemake (9.27.1, pyproject.toml);
    it can go once no working directory of the old form is left."""
    if not workflow.is_main_process:
        return
    rules = {
        step.name: (step.shellcmd, os.path.basename(step.resources["script"].value))
        for step in workflow.rules  # (`rule` is a keyword here)
        if step.shellcmd is not None and "script" in step.resources
    }
    found, updated = migrate_script_params(".snakemake", rules)
    if updated:
        logger.info(
            f"{found} Snakemake records of finished jobs updated to the script path as a resource"
            " (their params held the script's path): nothing reruns for it"
        )
    elif found:
        logger.warning(
            f"{found} Snakemake records of finished jobs hold the script path as a param (written"
            " by a checkout before it became a resource), left as they are: a Snakemake run holds"
            " this working directory (.snakemake/locks/). Until a start without it their steps"
            " show as changed ('Params have changed')"
        )


# The data steps follow the images, not the folder's time or path (cvgrid.plan.record_folder):
# their input is a record of the folder (its path and contents), whose time changes when the
# images do. Only the main process writes it; a cluster job re-reading the Snakefile finds it
# written. Where the folder does not exist yet (the download), rule record_dataset writes the
# first record.
DATASET_RECORD = "results/data/dataset_fingerprint.json"
DATA_DIR = config["data_dir"] or "resources/sign-language-digits"  # the user's, or the download
if workflow.is_main_process and os.path.isdir(DATA_DIR):
    _change, _previous = record_folder(DATA_DIR, DATASET_RECORD)
    if _change == "changed":
        logger.warning(
            f"data_dir {DATA_DIR} has changed since the images were last prepared"
            f" ({(_previous or {}).get('files', '?')} files before, see {DATASET_RECORD} now):"
            " the data steps, and every job that reads their output, run again"
        )
    elif _change == "moved":
        logger.info(f"data_dir {DATA_DIR} holds the images prepared from {_previous.get('folder')}: nothing to redo")
elif config["data_dir"] and not os.path.exists(DATASET_RECORD):
    # (Where the images were prepared already, the folder may be gone: a report made elsewhere.)
    raise WorkflowError(
        f"config: data_dir {DATA_DIR!r} does not exist or is not a folder"
        f" (a relative path starts in the working directory {os.getcwd()})"
    )


def prepare_mem_mb(wildcards, input, attempt):
    """prepare_dataset's memory in MB: the prepared array (every file of the folder record at
    image_size x image_size x 3 bytes; the script stops before decoding where its limit is
    smaller, cvgrid.data.check_space) plus 1 GB for Python and the decoder, times the attempt."""
    files = json.loads(Path(input[0]).read_text())["files"]
    return attempt * (1000 + math.ceil(files * config["image_size"] ** 2 * 3 / 1e6))


# Models that need twice model A's host memory (MobileNetV2 at 128 px with ImageNet weights,
# ResNet-18): by config name or by architecture. Add a model of your own if it is as heavy.
HEAVY_MODELS = ("model_b", "resnet18")


def train_mem_mb(wildcards, input, attempt):
    """A training job's host memory in MB (train, refit_best): 4 GB for torch and the model (8 GB
    for HEAVY_MODELS), plus twice images.npy (the array it loads whole, and a pinned copy where
    the array does not fit in the GPU's free memory), times the attempt. Evaluated once
    images.npy exists (a dry run before the data step shows <TBD>)."""
    heavy = wildcards.model in HEAVY_MODELS or architecture(config, wildcards.model) in HEAVY_MODELS
    data_mb = math.ceil(2 * os.path.getsize(input.images) / 1e6)
    return attempt * ((8000 if heavy else 4000) + data_mb)


def groups_table(wildcards):
    """The (file, group) table of the CV scheme of this root: [] for plain stratified folds."""
    # Rules without a root wildcard (refit_best) use the primary scheme.
    root = getattr(wildcards, "root", "results")
    scheme = config["cv"]["groups" if root == "results" else "compare_groups"]
    if scheme == "none":
        return []
    if scheme == "participants":
        return ["results/data/participants.tsv"]
    return [scheme]  # the user's own TSV with columns file, group


def groups_option(wildcards):
    """make_folds.py's and refit_best.py's --groups option, or "" for plain stratified folds."""
    return " ".join(f"--groups {shlex.quote(path)}" for path in groups_table(wildcards))


def scheme_label(scheme):
    return {
        "none": "stratified folds",
        "participants": "participant-grouped folds",
    }.get(scheme, f"grouped by {os.path.basename(scheme)}")


def train_outputs(name, model=None, root="results"):
    """Every training job's `name` file (metrics.json, ...) over the grid and the folds,
    or only those of `model`; under results/ (cv.groups) or results/compare/. With cv.race, the
    jobs the race trains (rules/race.smk: an input function, it waits for the race's rounds)."""
    if RACE:
        return raced_train_outputs(name, model, root)
    points = (
        GRID.dataframe
        if model is None
        else GRID.dataframe[GRID.dataframe["model"] == model]
    )
    return [
        f"{root}/train/{point}/repeat~{r}/fold~{f}/{name}"
        for point in Paramspace(points).instance_patterns
        for r, f in fold_keys(config)
    ]


def write_job_list(paths, listing, log):
    """Rule list_train_jobs: `paths` one a line into `listing`, and their number into `log`."""
    Path(listing).write_text("".join(f"{path}\n" for path in paths))
    Path(log).write_text(f"{len(paths)} training jobs listed in {listing}\n")


# One training job (rules/train.smk) per fold, per repeat of a grid point or per grid point
# (training.folds_per_job): the wildcards that name it, and its log and benchmark files (one per
# fold beside the fold's folder, else one per job beside the folders of its folds).
TRAIN_JOB = {
    "fold": f"{{root}}/train/{HP}/{FOLD}",
    "repeat": f"{{root}}/train/{HP}/repeat~{{repeat}}",
    "all": f"{{root}}/train/{HP}",
}[JOB_UNIT]
TRAIN_LOG = f"logs/{TRAIN_JOB}.log" if JOB_UNIT == "fold" else f"logs/{TRAIN_JOB}/folds.log"
TRAIN_BENCHMARK = f"benchmarks/{TRAIN_JOB}.tsv" if JOB_UNIT == "fold" else f"benchmarks/{TRAIN_JOB}/folds.tsv"


def train_job_folds(wildcards):
    """The (repeat, fold) pairs a training job trains, in the order of its outputs."""
    if JOB_UNIT == "fold":
        return [(int(wildcards.repeat), int(wildcards.fold))]
    if JOB_UNIT == "repeat":
        return [(int(wildcards.repeat), f) for f in range(config["cv"]["folds"])]
    return fold_keys(config)


def train_job_outputs(name):
    """The file `name` of each fold of a training job, by its wildcards: the same paths for
    every job unit, so that everything downstream is the same."""
    if JOB_UNIT == "fold":
        return [f"{TRAIN_JOB}/{name}"]
    if JOB_UNIT == "repeat":
        return [f"{TRAIN_JOB}/fold~{f}/{name}" for f in range(config["cv"]["folds"])]
    return [f"{TRAIN_JOB}/{FOLD.format(repeat=r, fold=f)}/{name}" for r, f in fold_keys(config)]


def gpu_check_gate(wildcards):
    """Input function of the training rule: nothing, once the check has passed. Before that, a job that
    still has outputs to write waits for the check (checkpoints.check_gpu.get() raises until the
    record exists, and Snakemake runs check_gpu first). A job whose outputs are all there does
    not ask: it is finished, and neither a re-check (`-R check_gpu`) nor a missing record may
    retrain it. One the user forces to train again (`-R train`, `--forcerun` of its file,
    `--forceall`) waits too. Evaluated in the process that plans the run; a cluster job
    re-parsing the Snakefile runs after the check, so get() returns there and its inputs are the
    same files (the record is never one of them)."""
    outputs = [path.format(**dict(wildcards.items())) for path in train_job_outputs("metrics.json")]
    if not all(os.path.exists(path) for path in outputs) or forced_to_train(outputs):
        checkpoints.check_gpu.get()
    return []


def forced_to_train(outputs):
    """Whether the command line forces the training job of `outputs` to run again."""
    forced = workflow.dag_settings
    named = {os.path.normpath(str(item)) for item in forced.forcerun}
    return forced.forceall or "train" in named or any(os.path.normpath(path) in named for path in outputs)


def model_weights(wildcards):
    """Input of the training rules: [] for a model from scratch, else [its weights file].
    Marked ancient: a re-downloaded copy of the same hash-named file retrains nothing."""
    weights = WEIGHTS.get(wildcards.model)
    return [ancient(weights["path"])] if weights else []


def weights_option(wildcards):
    """train.py's and refit_best.py's --weights option, or "" for a model from scratch."""
    weights = WEIGHTS.get(wildcards.model)
    return f"--weights {shlex.quote(weights['path'])}" if weights else ""


def point_settings_json(wildcards):
    """train.py's --settings: everything the grid point of these wildcards trains with
    (cvgrid.grid.point_settings), as JSON. A job gets only its own policy and model entry, so
    that editing another one reruns nothing."""
    point = {axis: getattr(wildcards, axis) for axis in GRID_AXES}
    return json.dumps(point_settings(config, point), sort_keys=True)


# Training settings that cannot change a result: never in a rule's params (Snakemake reruns a job
# whose params text changed), they go to the scripts through threads and resources.
RUN_ONLY_TRAINING_KEYS = ("threads", "device", "checkpoint_seconds", "folds_per_job", "tensorboard", "parallel_folds")


def refit_config_json():
    """refit_best.py's --config: what point_settings needs besides the best point's axes, as
    sorted JSON without RUN_ONLY_TRAINING_KEYS, nor a setting added later at its old value
    (cvgrid.grid.LATER_SETTINGS: a finished refit's params stay what they were)."""
    training = without_later_defaults(
        {key: value for key, value in config["training"].items() if key not in RUN_ONLY_TRAINING_KEYS})
    sections = {key: config[key] for key in ("augmentations", "models", "recipes")}
    return json.dumps({"training": training, **sections}, sort_keys=True)


def final_outputs():
    models = config["grid"]["model"]
    return [
        "results/cv_summary.tsv",
        "results/plots/fold_accuracies.svg",
        "results/stats/summary.html",
        *expand("results/plots/heatmap_{model}.svg", model=models),
        *expand("results/diagnostics/{model}/confusion.svg", model=models),
        *expand(
            "results/final/{model}/{name}",
            model=models,
            name=["model.pt", "model.onnx", "model.json", "final_model.html"],
        ),
        *(
            ["results/stats/protocol_comparison.tsv"]
            if COMPARE
            else []
        ),
    ]


# cv.race (rules/race.smk): the rounds' tables and the training jobs the race asks for.


def race_round_table(root, fold):
    """The race table of round `fold` (waits for its checkpoint: Snakemake re-plans after it)."""
    return checkpoints.race.get(root=root, fold=fold).output[0]


def race_round_points(root, fold):
    """The point folders that race in round `fold`: every grid point in the first round, then
    the survivors of the round before."""
    if fold == RACE:
        return list(GRID.instance_patterns)
    return survivors(race_round_table(root, fold - 1))


def race_round_jobs(root, fold):
    """list_race_jobs' input: the metrics.json of folds 0..fold-1 of the points racing in round `fold`."""
    return with_gpu_check_known([
        f"{root}/train/{point}/{FOLD.format(repeat=0, fold=f)}/metrics.json"
        for point in race_round_points(root, fold)
        for f in range(fold)
    ])


def with_gpu_check_known(metrics):
    """`metrics` (training jobs' metrics.json that a race asks for), once Snakemake knows that
    the GPU check's record exists. After a checkpoint Snakemake re-plans only the jobs that
    asked for it, not the new jobs they bring in: a new training job whose gpu_check_gate
    raised then would keep results/gpu_check.json among its inputs, and once trained be
    trained again for a changed set of inputs. Asking here first (only where the record
    exists and a job is missing: as the gate, nothing for finished jobs) lets the re-planned
    rule resolve the check before those jobs are made."""
    if os.path.exists(GPU_CHECK) and not all(os.path.exists(path) for path in metrics):
        checkpoints.check_gpu.get()
    return metrics


def raced_train_outputs(name, model=None, root="results"):
    """common.train_outputs under a race: the `name` file of every fold the race trains (every
    point's first RACE folds, then each round's survivors' next fold), in grid order, or only
    those of `model`. Every trained fold is listed, the stopped points' partial folds too."""
    trained = {point: RACE for point in GRID.instance_patterns}
    for fold in range(RACE, config["cv"]["folds"]):
        for point in survivors(race_round_table(root, fold)):
            trained[point] = fold + 1
    jobs = [
        f"{root}/train/{point}/{FOLD.format(repeat=0, fold=fold)}"
        for point, folds in trained.items()
        if model is None or point.startswith(f"model~{model}/")
        for fold in range(folds)
    ]
    with_gpu_check_known([f"{job}/metrics.json" for job in jobs])
    return [f"{job}/{name}" for job in jobs]


def race_record(wildcards):
    """summarize_cv's race input: the last round's table ([] without a race)."""
    return [race_round_table(wildcards.root, config["cv"]["folds"] - 1)] if RACE else []
