# One job per shard: manifest -> decoded, resized pixels. Pillow and numpy only (no torch).
# A shard is written once (img2npz.allocation); a compaction's copies rows from older shards.


rule preprocess_shard:
    input:
        manifest="results/index/shards/{shard}.tsv",
    output:
        npz="results/shards/{shard}.npz",
        failures="results/shards/{shard}.failures.tsv",
        # rows copied and decoded (img2npz.contract.ShardStats)
        stats="results/shards/{shard}.stats.json",
    log:
        "results/logs/preprocess_shard/{shard}.log",
    priority: shard_priority
    conda:
        "../../envs/img2npz.yaml"
    threads: 1
    resources:
        mem_mb=shard_mem_mb,
        runtime=shard_runtime,
    params:
        source=config["source"],
        pixel=PIXEL,
        timeout_s=config["preprocess"]["image_timeout_s"],
        max_pixels=config["preprocess"]["max_image_pixels"],
        # the shard job's filters (drop_duplicates is the merge's)
        filters={k: v for k, v in config["filters"].items() if k != "drop_duplicates"},
        # a release whose shards hold other members (img2npz.contract.SHARD_FORMAT) redoes them
        shard_format=SHARD_FORMAT,
    script:
        "../../scripts/preprocess_shard.py"
