# One job per shard: manifest -> decoded, resized pixels. Pillow and numpy only (no torch).
# A rebuilt shard copies the rows it already had (kept in results/shards/.kept) and decodes the rest.


rule preprocess_shard:
    input:
        manifest="results/index/shards/{shard}.tsv",
    output:
        npz="results/shards/{shard}.npz",
        failures="results/shards/{shard}.failures.tsv",
        # rows reused and decoded, and the shard's path range (img2npz.preprocess.ShardStats)
        stats="results/shards/{shard}.stats.json",
    log:
        "results/logs/preprocess_shard/{shard}.log",
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
    script:
        "../../scripts/preprocess_shard.py"
