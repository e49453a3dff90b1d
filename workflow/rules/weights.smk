# Pretrained weights. A model with `pretrained: imagenet` loads one file: the user's
# `weights_file`, or the file that the local rule fetch_weights downloads once (login nodes
# have internet, GPU nodes usually do not) into resources/weights/ under torchvision's own
# file name, checking the SHA256 prefix in that name. Training jobs only read the file.
# The plan (WEIGHTS, FETCH) is made in common.smk by scripts/cvgrid/plan.py.
import re


rule fetch_weights:
    output:
        "resources/weights/{weights_name}",
    log:
        "logs/fetch_weights/{weights_name}.log",
    wildcard_constraints:
        weights_name="|".join(re.escape(name) for name in FETCH) or "(?!)",
    # Needs internet: runs where snakemake runs (the login node), never as a cluster job.
    localrule: True
    conda:
        "../../envs/cvgrid.yaml"
    resources:
        script=script_path("fetch_weights.py"),
    params:
        url=lambda w: FETCH[w.weights_name]["url"],
        hint=lambda w: " or ".join(
            f"models.{m}.weights_file" for m in FETCH[w.weights_name]["models"]
        ),
    # The message of a failed download goes to the terminal as well as to the log.
    shell:
        "python {resources.script:q} --url {params.url:q} --dest {output:q}"
        " --config-hint {params.hint:q} 2>&1 | tee {log:q}"
