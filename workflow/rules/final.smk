rule refit_best:
    # Each model's best grid point, trained again on all images with the CV protocol. Which
    # point that is, the script reads from cv_summary.tsv when it runs (known only after the
    # CV), so nothing here depends on it. A training job like `train`, not a local rule: on
    # SLURM give it the same resources (profiles/slurm/config.yaml, set-resources).
    input:
        summary="results/cv_summary.tsv",
        # final.choose other than best: the point the statistics step chose (decision.tsv). The
        # default (best) reads cv_summary.tsv alone, as before.
        decision=lambda w: [] if config["final"]["choose"] == "best" else "results/stats/decision.tsv",
        images="results/data/images.npy",
        index="results/data/index.tsv",
        # cv.groups: the early-stopping split keeps groups apart, as make_folds does.
        groups=groups_table,
        # Pretrained models start from the same weights file as their CV jobs (weights.smk).
        weights=model_weights,
    output:
        weights="results/final/{model}/model.pt",
        onnx="results/final/{model}/model.onnx",
        info="results/final/{model}/model.json",
        history="results/final/{model}/history.tsv",
        page=report(
            "results/final/{model}/final_model.html",
            caption="../report/final_model.rst",
            category="4. Final model",
            subcategory="{model}",
            labels={"model": "{model}", "item": "final model"},
        ),
    log:
        "logs/refit_best/{model}.log",
    benchmark:
        "benchmarks/refit_best/{model}.tsv"
    conda:
        "../../envs/cvgrid.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=1,  # as train's: declared here, refined by profiles
        # A share of one local GPU, like train's (`--resources gpu_jobs=N`).
        gpu_jobs=1,
        mem_mb=train_mem_mb,  # as train's: by model and by the size of images.npy
        # Not results, as train's (strings: no local limit applies to them).
        device=str(config["training"]["device"]),
        checkpoint_seconds=str(config["training"]["checkpoint_seconds"]),
        script=script_path("refit_best.py"),
        tensorboard="tensorboard" if config["training"]["tensorboard"] else "no-tensorboard",
    # Only what changes a result, in canonical form (as train's): a re-saved config, a new thread
    # count, device, checkpoint interval or curves switch refits nothing.
    params:
        decision=lambda w, input: f"--decision {shlex.quote(input.decision)}" if input.decision else "",
        metric=config["statistics"]["metric"],  # named in model.json; cv_summary.tsv's rank 1 is its best
        config=refit_config_json(),
        split_seed=config["cv"]["seed"],
        validation_fraction=config["cv"]["validation_fraction"],
        groups=groups_option,
        weights=weights_option,
        out_dir=lambda w, output: os.path.dirname(output.info),
        # Not an output, like train's: it must survive a failed attempt so that a retry resumes.
        checkpoint="results/checkpoints/final/{model}.pt",
    shell:
        "python {resources.script:q} --summary {input.summary:q} --model {wildcards.model:q}"
        " {params.decision} --images {input.images:q} --index {input.index:q}"
        " --config {params.config:q} --device {resources.device:q} --gpus-requested {resources.gpu}"
        " --split-seed {params.split_seed} --validation-fraction {params.validation_fraction}"
        " {params.groups} {params.weights} --threads {threads}"
        " --checkpoint {params.checkpoint:q} --checkpoint-seconds {resources.checkpoint_seconds:q}"
        " --{resources.tensorboard} --metric {params.metric:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"
