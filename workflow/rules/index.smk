# Walk the tree once and cut it into shards: one manifest per shard, rewritten only when changed.


checkpoint index_images:
    input:
        index_inputs,
    output:
        manifests=update(directory("results/index/shards")),
        images=update("results/index/images.parquet"),
        classes=update("results/index/classes.tsv"),
        # images indexed and the shard bounds used (img2npz.contract.IndexSummary)
        summary=update("results/index/summary.json"),
    log:
        "results/logs/index_images.log",
    conda:
        "../../envs/img2npz.yaml"
    threads: 2  # large trees are listed by parallel worker processes
    resources:
        mem_mb=lambda wildcards, attempt: 2000 * attempt,  # about 350 MB per 10^6 files
        runtime=lambda wildcards, attempt: 30 * attempt,
    params:
        source=config["source"],
        extensions=config["extensions"],
        labels=LABEL_MODE,
        labels_csv=config["labels"] if LABEL_MODE == "csv" else None,
        shards=SHARD_BOUNDS,
        compaction={
            k: config["shards"][k] for k in ("compact_dropped", "compact_small")
        },
        fingerprint=lambda wildcards: source_fingerprint(),
        listings=LISTINGS,
        manifest_keys=MANIFEST_KEYS,
    script:
        "../../scripts/index_images.py"
