# Stream every shard into one memory-mappable dataset.npz, and every failure list into one.


rule merge_npz:
    input:
        npzs=all_shard_npzs,
        failures=all_shard_failures,
        classes="results/index/classes.tsv",
    output:
        npz="results/dataset.npz",
        failures="results/failures.tsv",
        # shard id -> npz mtime, for validate-report's "shards rebuilt"
        shards="results/dataset.shards.tsv",
    log:
        "results/logs/merge_npz.log",
    conda:
        "../../envs/img2npz.yaml"
    threads: 2  # the kernel copies the pixels while a second thread hashes them
    resources:
        mem_mb=1000,
        runtime=dataset_runtime,
    params:
        pixel=PIXEL,
        compress=config["merge"]["compress"],
        splits=config["splits"],
        group_by=config["group_by"],
    script:
        "../../scripts/merge_npz.py"
