# Repeats only where they decide (cv.decide.max_repeats; off where absent). After the configured
# repeats 0 .. cv.repeats - 1 of every grid point, one checkpoint per added repeat r compares the
# points in play on their repeats so far (cvgrid.decision.repeat_round) and names those that get
# repeat r: each model's best and the undecided points that max_repeats repeats could decide. The
# points of round r + 1 are those that got repeat r. Repeat r's folds are their own file, the one
# `cv.repeats: r + 1` would draw, so folds.tsv and the jobs trained on it stay as they are.

MAX_REPEATS = decide_max_repeats(config)  # None: cv.decide is off
ADDED_REPEATS = range(config["cv"]["repeats"], MAX_REPEATS or 0)


def folds_file(wildcards):
    """The training rule's fold table: folds.tsv for the configured repeats (and for a job of
    every repeat, training.folds_per_job: all, which has no repeat wildcard), an added repeat's
    own file."""
    if "repeat" not in wildcards.keys() or int(wildcards.repeat) < config["cv"]["repeats"]:
        return f"{wildcards.root}/data/folds.tsv"
    return f"{wildcards.root}/data/folds_repeat~{wildcards.repeat}.tsv"


def decided_points(root, repeat):
    """The folder patterns of the points that round `repeat` gave that repeat (raises until its
    checkpoint has run)."""
    table = checkpoints.decide_repeat.get(root=root, repeat=repeat).output.table
    import pandas as pd  # here: the planning of a run without cv.decide does not need it

    rounds = pd.read_csv(table, sep="\t", dtype={"point": str})
    return list(rounds.loc[rounds["gets_repeat"].astype(bool), "point"])


def jobs_of(root, points, repeats, name="metrics.json"):
    return [
        f"{root}/train/{point}/{FOLD.format(repeat=r, fold=f)}/{name}"
        for point in points
        for r in repeats
        for f in range(config["cv"]["folds"])
    ]


def round_inputs(wildcards):
    """The metrics.json files round `repeat` compares: repeats 0 .. repeat - 1 of the points in
    play (every point in the first round; then those the previous round repeated)."""
    repeat = int(wildcards.repeat)
    if repeat == config["cv"]["repeats"]:
        points = GRID.instance_patterns
    else:
        points = decided_points(wildcards.root, repeat - 1)
    return jobs_of(wildcards.root, points, range(repeat))


def decided_outputs(root, name="metrics.json"):
    """The added repeats' `name` files, round by round, for the job list (rules/report.smk):
    none without cv.decide; the walk stops at the first round that repeats no point."""
    outputs = []
    for repeat in ADDED_REPEATS:
        points = decided_points(root, repeat)
        if not points:
            break
        outputs += jobs_of(root, points, [repeat], name)
    return outputs


def decide_rounds(root):
    """The rounds' tables, in order, up to the first that repeats no point (none without cv.decide)."""
    tables = []
    for repeat in ADDED_REPEATS:
        tables.append(checkpoints.decide_repeat.get(root=root, repeat=repeat).output.table)
        if not decided_points(root, repeat):
            break
    return tables


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
    params:
        script=script_path("make_folds.py"),
        folds=config["cv"]["folds"],
        seed=config["cv"]["seed"],
        validation=config["cv"]["validation_fraction"],
        groups=groups_option,
    shell:
        "python {params.script:q} --index {input.index:q} --folds {params.folds}"
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
        from cvgrid.decision import repeat_round
        from cvgrid.io import write_tsv
        from cvgrid.stats import Thresholds

        prefix = f"{wildcards.root}/train/"
        jobs = {path: path[len(prefix) : path.index("/repeat~")] for path in input}
        table = repeat_round(jobs, GRID_AXES, Thresholds.from_config(params.thresholds),
                             int(wildcards.repeat), MAX_REPEATS)
        write_tsv(table, output.table)
        chosen = table.loc[table["gets_repeat"], "point"]
        Path(log[0]).write_text(
            f"repeat {wildcards.repeat}: {len(chosen)} of {len(table)} points in play get it"
            + "".join(f"\n  {point}" for point in chosen) + "\n"
        )
