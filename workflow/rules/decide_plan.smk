# The planning of cv.decide (rules/decide.smk has its rules): which repeats it adds, which points
# each round gave a repeat, and the files that follow from them.

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
    from cvgrid.decision import repeated_points  # here: the planning of a run without cv.decide does not need it

    return repeated_points(checkpoints.decide_repeat.get(root=root, repeat=repeat).output.table)


def jobs_of(root, points, repeats, name="metrics.json"):
    return [
        f"{root}/train/{point}/{FOLD.format(repeat=r, fold=f)}/{name}"
        for point in points
        for r in repeats
        for f in range(config["cv"]["folds"])
    ]


def job_point(path, root):
    """The grid point's folder pattern of a training job's file {root}/train/{point}/repeat~r/fold~f/name."""
    return os.path.relpath(Path(path).parents[2], f"{root}/train")


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
    return [output for repeat, _, points in rounds_of(root) for output in jobs_of(root, points, [repeat], name)]


def decide_rounds(root):
    """The rounds' tables, in order, up to the first that repeats no point (none without cv.decide)."""
    return [table for _, table, _ in rounds_of(root)]


def rounds_of(root):
    """cvgrid.decision.decided_rounds over this run's checkpoints: each waits for its round."""
    if not MAX_REPEATS:
        return []
    from cvgrid.decision import decided_rounds

    return decided_rounds(
        ADDED_REPEATS, lambda repeat: checkpoints.decide_repeat.get(root=root, repeat=repeat).output.table
    )
