# What runs before the grid: the downloads (on the login node, before the cluster run) and one
# GPU check job that every training job depends on.

# The files that the local download rules write, for the one login-node command
#   snakemake --cores 1 downloads [--configfile ...]
# (README, "Run on SLURM"): compute nodes, and a controller job there, often have no internet.
DOWNLOADS = ([] if config["data_dir"] else ["resources/sign-language-digits"]) + [
    f"resources/weights/{name}" for name in FETCH
]
# controller.sbatch sets CVGRID_NO_DOWNLOADS=1: there a missing download stops the run before
# anything is planned, naming the command, instead of a download that hangs on a compute node.
if os.environ.get("CVGRID_NO_DOWNLOADS") == "1":
    _missing = [path for path in DOWNLOADS if not os.path.exists(path)]
    if _missing:
        raise WorkflowError(
            f"not downloaded yet: {', '.join(_missing)}; run on the login node (with internet), in"
            f" {os.getcwd()} and with the same --configfile/--config: snakemake --cores 1 downloads"
        )


rule downloads:
    # Target of the login-node command above; nothing to do when everything is there.
    input:
        DOWNLOADS,
    localrule: True


# The check's record. The training jobs wait for it through a checkpoint (common.smk,
# gpu_check_gate), not through an input file: a file input would be recorded in each job's
# metadata, and a missing record (a restored study folder, a deleted file) would make Snakemake
# run the check again and then retrain every finished fold, because an input is produced again.
GPU_CHECK = "results/gpu_check.json"
# Models a training job trains at the same time on a GPU (training.parallel_folds, at most the
# folds of a job): each needs its memory beside the images, so the check sizes the fit for them.
MODELS_AT_ONCE = 1 if JOB_UNIT == "fold" else min(
    config["training"]["parallel_folds"], config["cv"]["folds"] if JOB_UNIT == "repeat" else len(fold_keys(config))
)


checkpoint check_gpu:
    # One job, submitted like a training job (the same GPU request; profiles may refine it), before
    # any of them: torch build, nvidia-smi, compute capability, a test operation, precision and
    # TF32, and whether the data array fits in the GPU's free memory. Its failure (CudaUnusable:
    # a wrong torch wheel or driver) fails the run once, with one message, and no training job is
    # submitted.
    # Not retried (retries: 0 wins over the profile's `retries:`): no retry mends a wrong wheel
    # or an old driver. To check again (a new node type): snakemake ... -R check_gpu.
    input:
        images="results/data/images.npy",
    output:
        GPU_CHECK,
    log:
        "logs/results/gpu_check.log",
    retries: 0
    conda:
        "../../envs/cvgrid.yaml"
    threads: 1
    resources:
        gpu=1,  # as the training rules'
        script=script_path("check_gpu.py"),
        models_at_once=str(MODELS_AT_ONCE),  # a string: no resource limit applies to it
    params:
        device=config["training"]["device"],
        precision=config["training"]["precision"],
    shell:
        "python {resources.script:q} --images {input.images:q} --device {params.device:q}"
        " --precision {params.precision:q} --gpus-requested {resources.gpu}"
        " --models-at-once {resources.models_at_once:q} --out {output:q} > {log:q} 2>&1"
