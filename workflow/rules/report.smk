rule summarize_cv:
    input:
        train_outputs("metrics.json"),
    output:
        folds="results/cv_folds.tsv",
        summary=report(
            "results/cv_summary.tsv",
            caption="../report/cv_summary.rst",
            category="CV summary",
            labels={"table": "CV summary"},
        ),
    log:
        "logs/summarize_cv.log",
    localrule: True
    conda:
        "../../envs/cvgrid.yaml"
    params:
        script=script_path("summarize_cv.py"),
    shell:
        "python {params.script:q} --folds-out {output.folds:q}"
        " --summary-out {output.summary:q} {input:q} > {log:q} 2>&1"


rule plot_heatmap:
    input:
        summary="results/cv_summary.tsv",
    output:
        report(
            "results/plots/heatmap_{model}.svg",
            caption="../report/heatmap.rst",
            category="Heatmaps",
            labels={"model": "{model}"},
        ),
    log:
        "logs/plot_heatmap/{model}.log",
    localrule: True
    conda:
        "../../envs/cvgrid.yaml"
    params:
        script=script_path("plot_cv.py"),
    shell:
        "python {params.script:q} --summary {input.summary:q}"
        " --heatmap {wildcards.model:q} {output:q} > {log:q} 2>&1"


rule plot_fold_accuracies:
    input:
        summary="results/cv_summary.tsv",
        folds="results/cv_folds.tsv",
    output:
        report(
            "results/plots/fold_accuracies.svg",
            caption="../report/fold_accuracies.rst",
            category="Fold accuracies",
            labels={"figure": "every fold"},
        ),
    log:
        "logs/plot_fold_accuracies.log",
    localrule: True
    conda:
        "../../envs/cvgrid.yaml"
    params:
        script=script_path("plot_cv.py"),
    shell:
        "python {params.script:q} --summary {input.summary:q} --folds {input.folds:q}"
        " --fold-plot {output:q} > {log:q} 2>&1"
