# Racing (cv.race.after_folds = K; the logic is cvgrid.race's). Every grid point trains folds
# 0..K-1; then one checkpoint per fold round k = K .. cv.folds-1 compares the survivors on their
# folds 0..k-1 (verdicts against each model's best), drops those called worse, and only the
# survivors train fold k. The training jobs are the same jobs, with the same params and paths, as
# without a race: the race only decides which of them are asked for (raced_train_outputs), so a
# raced run over folds trained elsewhere trains nothing new.


def race_round_table(root, fold):
    """The race table of round `fold` (waits for its checkpoint: Snakemake re-plans after it)."""
    return checkpoints.race.get(root=root, fold=fold).output[0]


def race_round_points(root, fold):
    """The point folders that race in round `fold`: every grid point in the first round, then
    the survivors of the round before."""
    if fold == RACE:
        return list(GRID.instance_patterns)
    return survivors(race_round_table(root, fold - 1))


def raced_train_outputs(name, model=None, root="results"):
    """common.train_outputs under a race: the `name` file of every fold the race trains (every
    point's first RACE folds, then each round's survivors' next fold), in grid order, or only
    those of `model`. Every trained fold is listed, the stopped points' partial folds too."""
    trained = {point: RACE for point in GRID.instance_patterns}
    for fold in range(RACE, config["cv"]["folds"]):
        for point in survivors(race_round_table(root, fold)):
            trained[point] = fold + 1
    return [
        f"{root}/train/{point}/{FOLD.format(repeat=0, fold=fold)}/{name}"
        for point, folds in trained.items()
        if model is None or point.startswith(f"model~{model}/")
        for fold in range(folds)
    ]


def race_record(wildcards):
    """summarize_cv's race input: the last round's table ([] without a race)."""
    return [race_round_table(wildcards.root, config["cv"]["folds"] - 1)] if RACE else []


rule list_race_jobs:
    # The metrics.json of the folds 0..k-1 of the points that race in round k, one a line (a
    # file, as list_train_jobs: a wide grid's paths do not fit on a command line).
    input:
        lambda w: [
            f"{w.root}/train/{point}/{FOLD.format(repeat=0, fold=fold)}/metrics.json"
            for point in race_round_points(w.root, int(w.fold))
            for fold in range(int(w.fold))
        ],
    output:
        "{root}/race/fold~{fold}_jobs.txt",
    log:
        "logs/{root}/race/list_race_jobs_fold~{fold}.log",
    localrule: True
    run:
        write_job_list(input, output[0], log[0])


checkpoint race:
    # Round k: which points train fold k. Local (on SLURM it runs in the controller): a few
    # seconds of statistics, and what it decides plans the next jobs.
    input:
        jobs="{root}/race/fold~{fold}_jobs.txt",
        previous=lambda w: [] if int(w.fold) == RACE else [f"{w.root}/race/fold~{int(w.fold) - 1}.tsv"],
    output:
        "{root}/race/fold~{fold}.tsv",
    log:
        "logs/{root}/race/fold~{fold}.log",
    localrule: True
    conda:
        "../../envs/cvgrid.yaml"
    params:
        script=script_path("race_round.py"),
        axes=",".join(GRID_AXES),
        previous=lambda w, input: f"--previous {shlex.quote(input.previous[0])}" if input.previous else "",
        statistics=config["statistics"],
    shell:
        "python {params.script:q} --metrics-list {input.jobs:q} --axes {params.axes:q} {params.previous}"
        " --rope {params.statistics[rope]} --probability {params.statistics[probability]}"
        " --alpha {params.statistics[alpha]} --metric {params.statistics[metric]:q}"
        " --out {output:q} > {log:q} 2>&1"
