rule train:
    # One job per grid point and fold (training.folds_per_job: 1; else train_point.smk is used
    # instead). On SLURM: one GPU (profiles/slurm/config.yaml).
    input:
        images="results/data/images.npy",
        index="results/data/index.tsv",
        folds="{root}/data/folds.tsv",
        weights=model_weights,  # [] from scratch, the weights file if pretrained
        gpu_check=ancient(GPU_CHECK),  # rules/check.smk: no training job before the check passed
    output:
        metrics=f"{{root}}/train/{HP}/{FOLD}/metrics.json",
        history=f"{{root}}/train/{HP}/{FOLD}/history.tsv",
        predictions=f"{{root}}/train/{HP}/{FOLD}/predictions.tsv",
    log:
        f"logs/{{root}}/train/{HP}/{FOLD}.log",
    benchmark:
        f"benchmarks/{{root}}/train/{HP}/{FOLD}.tsv"
    group:
        "train_folds"
    conda:
        "../../envs/cvgrid.yaml"
    threads: config["training"]["threads"]
    resources:
        # One GPU, declared here so that no profile can lose it (profiles refine it: gpu_model,
        # gres). Locally Snakemake ignores it unless --resources gpu=N; inside a SLURM job
        # without a GPU the job stops (--gpus-requested, hardware.training_device).
        gpu=1,
        # A share of one local GPU: `--resources gpu_jobs=4` lets four training jobs use it at
        # once (a model A fold needs well under 1 GB). Unlimited unless set; SLURM ignores it.
        gpu_jobs=1,
    params:
        script=script_path("train.py"),
        settings=point_settings_json,
        weights=weights_option,
        training=config["training"],
        # Not an output: Snakemake deletes the outputs of a failed job, the checkpoint must
        # survive it so that the retry resumes.
        out_dir=lambda w, output: os.path.dirname(output.metrics),
        checkpoint=lambda w: f"{w.root}/checkpoints/{HP.format(**w)}/{FOLD.format(**w)}.pt",
    shell:
        "python {params.script:q} --images {input.images:q} --index {input.index:q}"
        " --folds {input.folds:q} --repeat {wildcards.repeat} --fold {wildcards.fold}"
        " --settings {params.settings:q}"
        " --precision {params.training[precision]} --device {params.training[device]}"
        " --gpus-requested {resources.gpu}"
        " --threads {threads} {params.weights} --checkpoint-seconds {params.training[checkpoint_seconds]}"
        " --out-dir {params.out_dir:q} --checkpoint {params.checkpoint:q} > {log:q} 2>&1"
