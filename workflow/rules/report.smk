rule list_train_jobs:
    # The planned training jobs of a CV scheme, one metrics.json path a line. The gather steps
    # read their inputs from this file: a big grid's paths do not fit on a command line
    # (Snakemake hands the whole command to bash as one argument of at most 128 KiB).
    input:
        # The configured repeats of every point, then cv.decide's added ones (rules/decide.smk).
        lambda w: [*train_outputs("metrics.json", root=w.root), *decided_outputs(w.root)],
    output:
        "{root}/train_jobs.txt",
    log:
        "logs/{root}/list_train_jobs.log",
    localrule: True
    run:
        write_job_list(input, output[0], log[0])


rule summarize_cv:
    input:
        jobs="{root}/train_jobs.txt",
        race=race_record,  # cv.race: the last round's table (rules/race.smk), else nothing
    output:
        folds="{root}/cv_folds.tsv",
        summary=report(
            "{root}/cv_summary.tsv",
            caption="../report/cv_summary.rst",
            category="1. Summary",
            labels={"item": "CV summary table"},
        ),
    log:
        "logs/{root}/summarize_cv.log",
    localrule: True
    conda:
        "../../envs/cvgrid.yaml"
    resources:
        script=script_path("summarize_cv.py"),
    params:
        axes=",".join(GRID_AXES),
        metric=config["statistics"]["metric"],  # what ranks the grid points
        race=lambda w, input: f"--race {shlex.quote(input.race[0])}" if input.race else "",
    shell:
        "python {resources.script:q} --folds-out {output.folds:q}"
        " --summary-out {output.summary:q} --axes {params.axes:q} --metric {params.metric:q}"
        " --metrics-list {input.jobs:q} {params.race} > {log:q} 2>&1"


rule plot_heatmap:
    input:
        summary="results/cv_summary.tsv",
        verdicts="results/stats/compare_to_best.tsv",
    output:
        report(
            "results/plots/heatmap_{model}.svg",
            caption="../report/heatmap.rst",
            category="2. Per model",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "heatmap"},
        ),
    log:
        "logs/plot_heatmap/{model}.log",
    localrule: True
    conda:
        "../../envs/cvgrid.yaml"
    resources:
        script=script_path("plot_cv.py"),
    params:
        metric=config["statistics"]["metric"],
        axes=(
            "--heatmap-axes " + " ".join(shlex.quote(a) for a in config["plots"]["heatmap_axes"])
            if config["plots"].get("heatmap_axes")
            else ""
        ),
        sampled=SAMPLED_OPTION,  # a sampled grid: a scatter instead (already quoted)
    shell:
        "python {resources.script:q} --summary {input.summary:q} --verdicts {input.verdicts:q}"
        " --heatmap {wildcards.model:q} {output:q} {params.axes} --metric {params.metric:q}"
        " {params.sampled} > {log:q} 2>&1"


rule plot_fold_accuracies:
    input:
        summary="results/cv_summary.tsv",
        folds="results/cv_folds.tsv",
    output:
        report(
            "results/plots/fold_accuracies.svg",
            caption="../report/fold_accuracies.rst",
            category="3. Statistics",
            # the metric of the statistics (statistics.metric), whose folds the plot shows
            labels={"item": f"every fold's {config['statistics']['metric'].replace('_', ' ')}"},
        ),
    log:
        "logs/plot_fold_accuracies.log",
    localrule: True
    conda:
        "../../envs/cvgrid.yaml"
    resources:
        script=script_path("plot_cv.py"),
    params:
        metric=config["statistics"]["metric"],
    shell:
        "python {resources.script:q} --summary {input.summary:q} --folds {input.folds:q}"
        " --fold-plot {output:q} --metric {params.metric:q} > {log:q} 2>&1"


rule model_costs:
    # Parameters and multiply-accumulates per image of each model (torch's flop counter): the
    # one statistics table that needs torch, so that cv_statistics and planning stay without it.
    input:
        index="results/data/index.tsv",
    output:
        "results/stats/model_costs.tsv",
    log:
        "logs/model_costs.log",
    localrule: True
    conda:
        "../../envs/cvgrid.yaml"
    resources:
        script=script_path("model_costs.py"),
    params:
        config=json.dumps({"models": config["models"]}, sort_keys=True),
        models=config["grid"]["model"],
    shell:
        "python {resources.script:q} --index {input.index:q} --config {params.config:q}"
        " --models {params.models:q} --out {output:q} > {log:q} 2>&1"


rule expect_choice:
    # The accuracy to expect from the procedure that chooses this model's final point
    # (final.choose): BBC-CV on the pooled out-of-fold predictions (cvgrid.decision.decide).
    input:
        folds="results/cv_folds.tsv",
        jobs="results/train_jobs.txt",  # every job's metrics.json; the script keeps this model's
        predictions=lambda w: train_outputs("predictions.tsv", model=w.model),
        model_costs="results/stats/model_costs.tsv",
    output:
        "results/stats/expectation/{model}.json",
    log:
        "logs/expect_choice/{model}.log",
    localrule: True
    conda:
        "../../envs/cvgrid.yaml"
    resources:
        script=script_path("expect_choice.py"),
    params:
        statistics=config["statistics"],
        final=config["final"],
    shell:
        "python {resources.script:q} --model {wildcards.model:q} --folds {input.folds:q}"
        " --metrics-list {input.jobs:q} --model-costs {input.model_costs:q}"
        " --choose {params.final[choose]:q} --cost {params.final[cost]:q}"
        " --rope {params.statistics[rope]} --probability {params.statistics[probability]}"
        " --contender-probability {params.statistics[contender_probability]}"
        " --out {output:q} > {log:q} 2>&1"


rule cv_statistics:
    input:
        folds="results/cv_folds.tsv",
        summary="results/cv_summary.tsv",
        model_costs="results/stats/model_costs.tsv",
        expectations=expand("results/stats/expectation/{model}.json", model=config["grid"]["model"]),
        decide=lambda w: decide_rounds("results"),  # cv.decide's rounds (rules/decide.smk), or none
    output:
        summary=report(
            "results/stats/summary.html",
            caption="../report/summary.rst",
            category="1. Summary",
            labels={"item": "written summary"},
        ),
        selected=report(
            "results/stats/selected.tsv",
            caption="../report/selected.rst",
            category="1. Summary",
            labels={"item": "the winner, corrected for its selection"},
        ),
        # The landing page of report.html shows this file first (workflow/report/workflow.rst).
        decision_html=report(
            "results/stats/decision.html",
            caption="../report/decision.rst",
            category="1. Summary",
            labels={"item": "the decision (the summary's first lines)"},
        ),
        decision=report(
            "results/stats/decision.tsv",
            caption="../report/decision.rst",
            category="1. Summary",
            labels={"item": "the decision: what final.choose picks"},
        ),
        contenders=report(
            "results/stats/contenders.tsv",
            caption="../report/contenders.rst",
            category="1. Summary",
            labels={"item": "the contenders and their costs"},
        ),
        to_best=report(
            "results/stats/compare_to_best.tsv",
            caption="../report/compare_to_best.rst",
            category="3. Statistics",
            labels={"item": "each grid point vs its model's best (verdicts)"},
        ),
        resolution=report(
            "results/stats/resolution.tsv",
            caption="../report/resolution.rst",
            category="3. Statistics",
            labels={"item": "what these folds can resolve"},
        ),
        models=report(
            "results/stats/compare_models.tsv",
            caption="../report/compare_models.rst",
            category="3. Statistics",
            labels={"item": "best of each model vs the others"},
        ),
        effects=report(
            "results/stats/factor_effects.tsv",
            caption="../report/factor_effects.rst",
            category="3. Statistics",
            labels={"item": "factor effects (table)"},
        ),
        noise=report(
            "results/stats/repeat_noise.tsv",
            caption="../report/repeat_noise.rst",
            category="3. Statistics",
            labels={"item": "noise floor across repeats"},
        ),
        effects_plot=report(
            "results/stats/factor_effects.svg",
            caption="../report/factor_effects.rst",
            category="3. Statistics",
            labels={"item": "factor effects (plot)"},
        ),
        parallel=report(
            "results/stats/parallel_coordinates.svg",
            caption="../report/parallel_coordinates.rst",
            category="1. Summary",
            labels={"item": "the whole grid"},
        ),
        # A sampled grid's trends over its ranged axes (none for a grid of lists).
        **(
            {}
            if SAMPLED_RANGES is None
            else {
                "trends": report(
                    "results/stats/factor_trends.tsv",
                    caption="../report/factor_trends.rst",
                    category="3. Statistics",
                    labels={"item": "trends over the ranged axes (table)"},
                ),
                "bins": report(
                    "results/stats/factor_bins.tsv",
                    caption="../report/factor_trends.rst",
                    category="3. Statistics",
                    labels={"item": "trends over the ranged axes (bins)"},
                ),
                "trends_plot": report(
                    "results/stats/factor_trends.svg",
                    caption="../report/factor_trends.rst",
                    category="3. Statistics",
                    labels={"item": "trends over the ranged axes (plot)"},
                ),
            }
        ),
    log:
        "logs/cv_statistics.log",
    localrule: True
    conda:
        "../../envs/cvgrid.yaml"
    resources:
        script=script_path("cv_statistics.py"),
    params:
        out_dir=lambda w, output: os.path.dirname(output.summary),
        statistics=config["statistics"],
        final=config["final"],
        sampled=SAMPLED_OPTION,  # a sampled grid's ranged axes (already quoted), else nothing
        # cv.decide's rounds (quoted), else nothing.
        decide=lambda w, input: f"--decide-rounds {' '.join(shlex.quote(path) for path in input.decide)}"
        if input.decide
        else "",
    shell:
        "python {resources.script:q} --folds {input.folds:q} --summary {input.summary:q}"
        " --alpha {params.statistics[alpha]} --rope {params.statistics[rope]}"
        " --probability {params.statistics[probability]} --metric {params.statistics[metric]:q}"
        " --contender-probability {params.statistics[contender_probability]}"
        " --model-costs {input.model_costs:q} --expectations {input.expectations:q}"
        " --choose {params.final[choose]:q} --cost {params.final[cost]:q} {params.sampled} {params.decide}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule plot_diagnostics:
    input:
        summary="results/cv_summary.tsv",
        images="results/data/images.npy",
        index="results/data/index.tsv",
        jobs="results/train_jobs.txt",  # every job's metrics.json; the script keeps this model's
        histories=lambda w: train_outputs("history.tsv", model=w.model),
        predictions=lambda w: train_outputs("predictions.tsv", model=w.model),
    output:
        confusion=report(
            "results/diagnostics/{model}/confusion.svg",
            caption="../report/confusion.rst",
            category="2. Per model",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "confusion matrix"},
        ),
        per_class=report(
            "results/diagnostics/{model}/per_class_accuracy.tsv",
            caption="../report/per_class.rst",
            category="2. Per model",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "per-class accuracy"},
        ),
        curves=report(
            "results/diagnostics/{model}/learning_curves.svg",
            caption="../report/learning_curves.rst",
            category="2. Per model",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "learning curves"},
        ),
        errors=report(
            "results/diagnostics/{model}/errors.png",
            caption="../report/errors.rst",
            category="2. Per model",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "misclassified test images"},
        ),
    log:
        "logs/plot_diagnostics/{model}.log",
    localrule: True
    conda:
        "../../envs/cvgrid.yaml"
    resources:
        script=script_path("plot_diagnostics.py"),
    params:
        out_dir=lambda w, output: os.path.dirname(output.confusion),
    shell:
        "python {resources.script:q} --model {wildcards.model:q} --summary {input.summary:q}"
        " --images {input.images:q} --index {input.index:q} --out-dir {params.out_dir:q}"
        " --metrics-list {input.jobs:q} > {log:q} 2>&1"


rule compare_protocols:
    input:
        primary="results/cv_summary.tsv",
        compared="results/compare/cv_summary.tsv",
    output:
        table=report(
            "results/stats/protocol_comparison.tsv",
            caption="../report/protocol_comparison.rst",
            category="1. Summary",
            labels={"item": "CV protocols side by side (table)"},
        ),
        plot=report(
            "results/stats/protocol_comparison.svg",
            caption="../report/protocol_comparison.rst",
            category="1. Summary",
            labels={"item": "CV protocols side by side (plot)"},
        ),
    log:
        "logs/compare_protocols.log",
    # The same grid under cv.groups and cv.compare_groups (e.g. random vs participant folds).
    localrule: True
    conda:
        "../../envs/cvgrid.yaml"
    resources:
        script=script_path("compare_protocols.py"),
    params:
        primary=scheme_label(config["cv"]["groups"]),
        compared=scheme_label(config["cv"]["compare_groups"]),
    shell:
        "python {resources.script:q} --primary {input.primary:q} --primary-label {params.primary:q}"
        " --compared {input.compared:q} --compared-label {params.compared:q}"
        " --out {output.table:q} --plot {output.plot:q} > {log:q} 2>&1"
