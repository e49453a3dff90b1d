# Repeats only where they decide (cv.decide.max_repeats; off where absent). After the configured
# repeats 0 .. cv.repeats - 1 of every grid point, one checkpoint per added repeat r compares the
# points in play on their repeats so far (cvgrid.decision.repeat_round) and names those that get
# repeat r: each model's best and the undecided points that max_repeats repeats could decide. The
# points of round r + 1 are those that got repeat r. Repeat r's folds are their own file, the one
# `cv.repeats: r + 1` would draw, so folds.tsv and the jobs trained on it stay as they are.


rule make_repeat_folds:
    # An added repeat's fold assignment: repeat r of cvgrid.folds.repeat_folds(seed, r), the one a
    # folds.tsv of cv.repeats: r + 1 holds (tests/test_decide.py checks it).
    input:
        index="results/data/index.tsv",
        groups=groups_table,
    output:
        "{root}/data/folds_repeat~{repeat}.tsv",
    log:
        "logs/{root}/make_folds_repeat~{repeat}.log",
    localrule: True
    conda:
        "../../envs/cvgrid.yaml"
    resources:
        script=script_path("make_folds.py"),
    params:
        folds=config["cv"]["folds"],
        seed=config["cv"]["seed"],
        validation=config["cv"]["validation_fraction"],
        groups=groups_option,
    shell:
        "python {resources.script:q} --index {input.index:q} --folds {params.folds}"
        " --only-repeat {wildcards.repeat} --seed {params.seed} --validation-fraction {params.validation}"
        " {params.groups} --out {output:q} > {log:q} 2>&1"


checkpoint decide_repeat:
    # Runs in the controller on SLURM (a localrule): it reads the points' metrics and plans jobs.
    input:
        round_inputs,
    output:
        table="{root}/decide/repeat~{repeat}.tsv",
    log:
        "logs/{root}/decide_repeat~{repeat}.log",
    localrule: True
    params:
        thresholds=config["statistics"],
    run:
        from cvgrid.decision import write_round

        jobs = {path: job_point(path, wildcards.root) for path in input}
        write_round(jobs, GRID_AXES, params.thresholds, int(wildcards.repeat), MAX_REPEATS, output.table, log[0])
