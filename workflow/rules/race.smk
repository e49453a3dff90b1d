# Racing (cv.race.after_folds = K; the logic is cvgrid.race's). Every grid point trains folds
# 0..K-1; then one checkpoint per fold round k = K .. cv.folds-1 compares the survivors on their
# folds 0..k-1 (verdicts against each model's best), drops those called worse, and only the
# survivors train fold k. The training jobs are the same jobs, with the same params and paths, as
# without a race: the race only decides which of them are asked for (raced_train_outputs), so a
# raced run over folds trained elsewhere trains nothing new.


# A run's gather lists written without a race stay as they are when cv.race is added (Snakemake
# does not re-plan a finished rule for a checkpoint it has not met): say so, and how to race.
if RACE and workflow.is_main_process:
    for _root in ["results"] + (["results/compare"] if COMPARE else []):
        if os.path.exists(f"{_root}/train_jobs.txt") and not os.path.exists(f"{_root}/race/fold~{config['cv']['folds'] - 1}.tsv"):
            logger.warning(
                f"cv.race is set, but {_root}/train_jobs.txt was written by a run without a race: its"
                " statistics stay the full grid's until you add -R list_train_jobs (the race then runs over"
                " the folds trained already and trains only the survivors' missing folds)"
            )

rule list_race_jobs:
    # The metrics.json of the folds 0..k-1 of the points that race in round k, one a line (a
    # file, as list_train_jobs: a wide grid's paths do not fit on a command line).
    input:
        lambda w: race_round_jobs(w.root, int(w.fold)),
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
    resources:
        script=script_path("race_round.py"),
    params:
        axes=",".join(GRID_AXES),
        previous=lambda w, input: f"--previous {shlex.quote(input.previous[0])}" if input.previous else "",
        statistics=config["statistics"],
    shell:
        "python {resources.script:q} --metrics-list {input.jobs:q} --axes {params.axes:q} {params.previous}"
        " --rope {params.statistics[rope]} --probability {params.statistics[probability]}"
        " --alpha {params.statistics[alpha]} --metric {params.statistics[metric]:q}"
        " --out {output:q} > {log:q} 2>&1"
