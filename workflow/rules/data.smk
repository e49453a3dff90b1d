rule fetch_dataset:
    output:
        directory("resources/sign-language-digits"),
    log:
        "logs/fetch_dataset.log",
    retries: 2
    # Runs only when data_dir is empty: downloads the pinned Sign Language Digits commit. Offline,
    # its message (what to download, how to set data_dir) goes to the terminal as well as the log.
    localrule: True
    conda:
        "../../envs/cvgrid.yaml"
    resources:
        script=script_path("fetch_dataset.py"),
    params:
        url=config["download"]["url"],
        subdir=config["download"]["subdir"],
        classes=config["download"]["expected_classes"],
        images=config["download"]["expected_images"],
    shell:
        "python {resources.script:q} --url {params.url:q} --subdir {params.subdir:q}"
        " --expected-classes {params.classes} --expected-images {params.images}"
        " --dest {output:q} 2>&1 | tee {log:q}"


if not config["data_dir"]:

    rule record_dataset:
        # The first record of the downloaded folder (planning writes it where the folder exists
        # already; a rule that wrote it there too would have no metadata for Snakemake to check).
        input:
            ancient(DATA_DIR),
        output:
            DATASET_RECORD,
        log:
            "logs/record_dataset.log",
        localrule: True
        run:
            write_json(folder_record(input[0]), output[0])
            Path(log[0]).write_text(f"recorded the contents of {input[0]} in {output[0]}\n")


rule prepare_dataset:
    input:
        # The record of the folder (where it is, what is in it), not the folder: neither its time
        # nor its path (a copy elsewhere) is a reason to run again. The script reads the folder
        # named in the record.
        DATASET_RECORD,
    output:
        images="results/data/images.npy",
        index="results/data/index.tsv",
        report=report(
            "results/data/prepare_report.json",
            caption="../report/prepare_report.rst",
            category="1. Summary",
            labels={"item": "data: images used, ignored and skipped"},
        ),
    log:
        "logs/prepare_dataset.log",
    benchmark:
        "benchmarks/prepare_dataset.tsv"
    conda:
        "../../envs/cvgrid.yaml"
    resources:
        # Follows the number of files in the folder and image_size, times the attempt.
        mem_mb=prepare_mem_mb,
        script=script_path("prepare_dataset.py"),
    params:
        size=config["image_size"],
        skip=("--skip-unreadable" if config["skip_unreadable"] else ""),
    shell:
        "python {resources.script:q} --data-record {input:q} --size {params.size} {params.skip}"
        " --images {output.images:q} --index {output.index:q} --report {output.report:q} > {log:q} 2>&1"


rule infer_participants:
    input:
        index="results/data/index.tsv",
    output:
        table=report(
            "results/data/participants.tsv",
            caption="../report/participants.rst",
            category="3. Statistics",
            labels={"item": "participants inferred from file names"},
        ),
        summary="results/data/participants.json",
    log:
        "logs/infer_participants.log",
    # cv.groups (or cv.compare_groups) = participants: who is in which Sign Language Digits photo.
    localrule: True
    conda:
        "../../envs/cvgrid.yaml"
    resources:
        script=script_path("infer_participants.py"),
    shell:
        "python {resources.script:q} --index {input.index:q} --out {output.table:q}"
        " --summary {output.summary:q} > {log:q} 2>&1"


rule make_folds:
    # One fold table per CV scheme: results/ for cv.groups, results/compare/ for cv.compare_groups.
    input:
        index="results/data/index.tsv",
        groups=groups_table,
    output:
        "{root}/data/folds.tsv",
    log:
        "logs/{root}/make_folds.log",
    conda:
        "../../envs/cvgrid.yaml"
    resources:
        script=script_path("make_folds.py"),
    params:
        folds=config["cv"]["folds"],
        repeats=config["cv"]["repeats"],
        seed=config["cv"]["seed"],
        validation=config["cv"]["validation_fraction"],
        groups=groups_option,
    shell:
        "python {resources.script:q} --index {input.index:q} --folds {params.folds}"
        " --repeats {params.repeats} --seed {params.seed} --validation-fraction {params.validation}"
        " {params.groups} --out {output:q} > {log:q} 2>&1"
