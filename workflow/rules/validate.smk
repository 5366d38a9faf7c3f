# Check the dataset against the contract and show it: validation.json, pictures, one HTML page.
# A failed hard check fails the job naming it; Snakemake then deletes the job's outputs, so the
# page of a failed run is kept as a log (logs survive), results/logs/validate_report.html.


rule validate_report:
    input:
        dataset=DATASET,
        failures="results/failures.tsv",
        images="results/index/images.parquet",
        shards="results/dataset.shards.tsv",
        verified="results/dataset.verified.json",
        # images indexed, files skipped by extension, the labels CSV's warnings (the summary's notes)
        summary="results/index/summary.json",
    output:
        json="results/validation.json",
        samples=report(
            "results/report/samples.png",
            caption="../report/samples.rst",
            category="Dataset",
        ),
        class_counts=report(
            "results/report/class_counts.png",
            caption="../report/class_counts.rst",
            category="Dataset",
        ),
        histograms=report(
            "results/report/histograms.png",
            caption="../report/histograms.rst",
            category="Dataset",
        ),
        html=report(
            "results/report/index.html",
            caption="../report/index.rst",
            category="Dataset",
        ),
        changes=report(
            "results/report/changes.tsv",
            caption="../report/changes.rst",
            category="Dataset",
        ),
        near_duplicates=report(
            "results/report/near_duplicates.tsv",
            caption="../report/near_duplicates.rst",
            category="Dataset",
        ),
        near_pairs=report(
            "results/report/near_duplicates.png",
            caption="../report/near_duplicates.rst",
            category="Dataset",
        ),
        # What the last checked dataset held, to report the next run's changes against; kept
        # across runs (update) and restored by Snakemake when a run fails.
        catalogue=update("results/report/catalogue.npz"),
    log:
        main="results/logs/validate_report.log",
        html="results/logs/validate_report.html",
        near_duplicates="results/logs/near_duplicates.tsv",
    conda:
        "../../envs/img2npz.yaml"
    threads: config["validate"]["threads"]  # the pixel pass (img2npz.pixelpass)
    resources:
        mem_mb=validate_mem_mb,
        runtime=dataset_runtime,
    params:
        pixel=PIXEL,
        labels=LABEL_MODE,
        layout=config["layout"],
        # its threads are not a limit: a change of them does not redo the validation
        limits={k: v for k, v in config["validate"].items() if k != "threads"},
    script:
        "../../scripts/validate_report.py"
