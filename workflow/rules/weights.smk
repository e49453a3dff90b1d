# Pretrained weights. A model with `pretrained: imagenet` loads one file: the user's
# `weights_file`, or the file that the local rule fetch_weights downloads once (login nodes
# have internet, GPU nodes usually do not) into resources/weights/ under torchvision's own
# file name, checking the SHA256 prefix in that name. Training jobs only read the file.
import re
import shlex


def _pretrained_weights():
    """{model: {"path": file the job loads, "url": where fetch_weights gets it or None}}
    for the grid's models with pretrained: imagenet."""
    models = [
        m
        for m in config["grid"]["model"]
        if config["models"].get(m, {}).get("pretrained", "none") == "imagenet"
    ]
    if not models:
        return {}
    # Imports torch and torchvision, so only when a model is pretrained.
    from cvgrid.models import get_spec
    from cvgrid.weights import WeightsError, file_name, torchvision_url

    table = {}
    for model in models:
        entry = config["models"][model]
        if entry.get("weights_file"):
            path = entry["weights_file"]
            if not os.path.isfile(path):
                raise WorkflowError(
                    f"config: models.{model}.weights_file is {path}, which is not a file"
                    f" (relative paths start in the working directory {os.getcwd()})"
                )
            table[model] = {"path": path, "url": None}
            continue
        pretrained = get_spec(model).pretrained
        if pretrained is None:
            raise WorkflowError(
                f"config: models.{model}.pretrained is imagenet, but the registry entry of"
                f" {model} (scripts/cvgrid/models.py) names no pretrained weights"
            )
        try:
            url = entry.get("weights_url") or torchvision_url(pretrained.weights)
            name = file_name(url)
        except WeightsError as error:
            raise WorkflowError(f"config: models.{model}: {error}") from None
        table[model] = {"path": f"resources/weights/{name}", "url": url}
    return table


WEIGHTS = _pretrained_weights()
# resources/weights/ file name -> {"url", "models"}: one download per file.
FETCH = {}
for _model, _w in WEIGHTS.items():
    if _w["url"] is None:
        continue
    _name = os.path.basename(_w["path"])
    _fetch = FETCH.setdefault(_name, {"url": _w["url"], "models": []})
    if _fetch["url"] != _w["url"]:
        raise WorkflowError(
            f"config: two weight URLs end in the same file name {_name}: {_fetch['url']} and {_w['url']}"
        )
    _fetch["models"].append(_model)


def model_weights(wildcards):
    """The train rule's weights input: [] for a model from scratch, else [its file]. Marked
    ancient: a re-downloaded copy of the same hash-named file does not retrain everything."""
    w = WEIGHTS.get(wildcards.model)
    return [ancient(w["path"])] if w else []


def weights_arg(wildcards):
    """train.py's --weights argument, or nothing for a model from scratch."""
    w = WEIGHTS.get(wildcards.model)
    return f"--weights {shlex.quote(w['path'])}" if w else ""


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
    params:
        script=script_path("fetch_weights.py"),
        url=lambda w: FETCH[w.weights_name]["url"],
        hint=lambda w: " or ".join(
            f"models.{m}.weights_file" for m in FETCH[w.weights_name]["models"]
        ),
    # The message of a failed download goes to the terminal as well as to the log.
    shell:
        "python {params.script:q} --url {params.url:q} --dest {output:q}"
        " --config-hint {params.hint:q} 2>&1 | tee {log:q}"
