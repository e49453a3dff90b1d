# training.folds_per_job other than 1: one job per grid point, or per repeat of it, trains its
# folds one after the other in one process (torch, the GPU and the data loaded once). The
# Snakefile includes this file instead of train.smk, so that no output has two rules.


rule train_point:
    # On SLURM: one GPU (profiles/slurm/config.yaml). A retry (scancel, time limit) scores the
    # folds the failed attempt had finished from their checkpoints without training them, and
    # resumes the interrupted one from its last checkpoint.
    input:
        images="results/data/images.npy",
        index="results/data/index.tsv",
        folds="{root}/data/folds.tsv",
        weights=model_weights,  # [] from scratch, the weights file if pretrained
        gpu_check=ancient(GPU_CHECK),  # rules/check.smk: no training job before the check passed
    output:
        metrics=point_job_outputs("metrics.json"),
        history=point_job_outputs("history.tsv"),
        predictions=point_job_outputs("predictions.tsv"),
    log:
        f"logs/{POINT_JOB}/folds.log",
    benchmark:
        f"benchmarks/{POINT_JOB}/folds.tsv"
    conda:
        "../../envs/cvgrid.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=1,  # as train's: declared here, refined by profiles
        gpu_jobs=1,  # a share of one local GPU, as train's
    params:
        script=script_path("train.py"),
        settings=point_settings_json,
        weights=weights_option,
        training=config["training"],
        repeats=lambda w: [r for r, f in point_job_folds(w)],
        fold_numbers=lambda w: [f for r, f in point_job_folds(w)],
        out_dirs=lambda w, output: [os.path.dirname(path) for path in output.metrics],
        # Not outputs, as train's: they must survive a failed attempt.
        checkpoints=lambda w: [
            f"{w.root}/checkpoints/{HP.format(**w)}/{FOLD.format(repeat=r, fold=f)}.pt"
            for r, f in point_job_folds(w)
        ],
    shell:
        "python {params.script:q} --images {input.images:q} --index {input.index:q}"
        " --folds {input.folds:q} --repeat {params.repeats} --fold {params.fold_numbers}"
        " --settings {params.settings:q}"
        " --precision {params.training[precision]} --device {params.training[device]}"
        " --gpus-requested {resources.gpu}"
        " --threads {threads} {params.weights} --checkpoint-seconds {params.training[checkpoint_seconds]}"
        " --out-dir {params.out_dirs:q} --checkpoint {params.checkpoints:q} > {log:q} 2>&1"
