# Stream every shard into one memory-mappable dataset.npz, and every failure list into one; then
# remove the files of shards that no longer exist.


rule merge_npz:
    input:
        npzs=all_shard_npzs,
        failures=all_shard_failures,
        stats=all_shard_stats,
        classes="results/index/classes.tsv",
    output:
        npz="results/dataset.npz",
        failures="results/failures.tsv",
        # per shard: npz mtime, rows reused and decoded, for validate-report's change section
        shards="results/dataset.shards.tsv",
    log:
        "results/logs/merge_npz.log",
    conda:
        "../../envs/img2npz.yaml"
    threads: config["merge"]["streams"]  # copy_file_range streams (img2npz.filecopy)
    resources:
        mem_mb=1000,
        runtime=dataset_runtime,
    params:
        pixel=PIXEL,
        compress=config["merge"]["compress"],
        splits=config["splits"],
        group_by=config["group_by"],
        group_near_duplicates=config["group_near_duplicates"],
        drop_duplicates=config["filters"]["drop_duplicates"],
        # only where used: then a change of the threshold redoes the merge
        near_duplicate_bits=(
            config["validate"]["near_duplicate_bits"]
            if config["group_near_duplicates"]
            or config["filters"]["drop_duplicates"] == "near"
            else None
        ),
        # files of shards that no longer exist are removed from here (img2npz.reuse.prune)
        shards_dir="results/shards",
    script:
        "../../scripts/merge_npz.py"


# The shards only, for ShardedNPZDataset without a merge (`snakemake shards`): the shard table,
# and the files of shards that no longer exist removed, as the merge does.
rule shards:
    input:
        npzs=all_shard_npzs,
        failures=all_shard_failures,
        stats=all_shard_stats,
    output:
        shards="results/shard_table.tsv",
    log:
        "results/logs/shards.log",
    conda:
        "../../envs/img2npz.yaml"
    params:
        shards_dir="results/shards",
    script:
        "../../scripts/shards.py"
