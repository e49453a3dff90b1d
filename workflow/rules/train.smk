# Training: one rule for every job unit (training.folds_per_job): a job trains one fold, the
# folds of one repeat, or every fold of a grid point, one after the other in one process (torch,
# the GPU and the data loaded once). The outputs are the same files either way; what a job
# covers comes from common.smk (TRAIN_JOB, train_job_outputs, train_job_folds).
#
# Params hold only what changes a result, in canonical form: the point's settings as sorted
# JSON and the precision (Snakemake reruns a job whose params text changed). The thread count,
# checkpoint interval, TensorBoard switch, parallel folds, device and script path are threads and resources (not compared), so
# that changing them retrains nothing; the output folders and checkpoint files follow from the
# wildcards.


rule train:
    # On SLURM: one GPU (profiles/slurm/config.yaml). A retry (scancel, time limit) scores the
    # folds the failed attempt had finished from their checkpoints without training them, and
    # resumes the interrupted one from its last checkpoint.
    input:
        images="results/data/images.npy",
        index="results/data/index.tsv",
        folds=folds_file,  # folds.tsv, or an added repeat's own file (rules/decide.smk)
        weights=model_weights,  # [] from scratch, the weights file if pretrained
        gpu_check=gpu_check_gate,  # rules/check.smk: no training job before the check passed
    output:
        metrics=train_job_outputs("metrics.json"),
        history=train_job_outputs("history.tsv"),
        predictions=train_job_outputs("predictions.tsv"),
    log:
        TRAIN_LOG,
    benchmark:
        TRAIN_BENCHMARK
    # One job per fold: the group lets a SLURM run pack several folds per submission
    # (profiles/slurm/config.yaml); a job of several folds is one submission already.
    group:
        "train_folds" if JOB_UNIT == "fold" else None
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
        # Host memory by model and by the size of images.npy, times the attempt (common.smk).
        mem_mb=train_mem_mb,
        # Not results (strings: no local limit applies to them).
        device=str(config["training"]["device"]),
        checkpoint_seconds=str(config["training"]["checkpoint_seconds"]),
        # Folds trained at the same time on the GPU (1 on the CPU): the same results.
        parallel_folds=str(config["training"]["parallel_folds"]),
        # Curves change no result: switching them retrains nothing.
        tensorboard="tensorboard" if config["training"]["tensorboard"] else "no-tensorboard",
        script=script_path("train.py"),
    params:
        settings=point_settings_json,
        precision=config["training"]["precision"],
        weights=weights_option,
        repeats=lambda w: [r for r, f in train_job_folds(w)],
        fold_numbers=lambda w: [f for r, f in train_job_folds(w)],
        out_dirs=lambda w, output: [os.path.dirname(path) for path in output.metrics],
        # Not outputs: Snakemake deletes the outputs of a failed job, the checkpoints must
        # survive it so that the retry resumes.
        checkpoints=lambda w: [
            f"{w.root}/checkpoints/{HP.format(**w)}/{FOLD.format(repeat=r, fold=f)}.pt"
            for r, f in train_job_folds(w)
        ],
    shell:
        "python {resources.script:q} --images {input.images:q} --index {input.index:q}"
        " --folds {input.folds:q} --repeat {params.repeats} --fold {params.fold_numbers}"
        " --settings {params.settings:q} --precision {params.precision:q}"
        " --device {resources.device:q} --gpus-requested {resources.gpu} --threads {threads} {params.weights}"
        " --checkpoint-seconds {resources.checkpoint_seconds:q} --parallel-folds {resources.parallel_folds:q}"
        " --{resources.tensorboard}"
        " --out-dir {params.out_dirs:q} --checkpoint {params.checkpoints:q} > {log:q} 2>&1"
