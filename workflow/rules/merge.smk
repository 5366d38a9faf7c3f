# Gather the rows the index placed in shards into the dataset (config layout: one dataset.npz, or
# results/dataset/ of a row table and links to the shards), and every failure list into one; then
# remove the files of shards that no longer exist.


rule merge_npz:
    input:
        npzs=all_shard_npzs,
        failures=all_shard_failures,
        stats=all_shard_stats,
        classes="results/index/classes.tsv",
        # each image's shard and row there, and its label
        images="results/index/images.parquet",
    output:
        dataset=DATASET,
        failures="results/failures.tsv",
        # per shard: npz mtime, rows copied and decoded, for validate-report's change section
        shards="results/dataset.shards.tsv",
        # the pixels the merge copied, read back and hashed as copied: validate-report need not read
        # them again; kept across runs (update) for the shards whose rows it hashed already
        verified=update("results/dataset.verified.json"),
    log:
        "results/logs/merge_npz.log",
    conda:
        "../../envs/img2npz.yaml"
    # copy_file_range streams, or threads reading the copy back (img2npz.filecopy, readback)
    threads: max(config["merge"]["streams"], config["merge"]["threads"])
    resources:
        mem_mb=merge_mem_mb,
        runtime=dataset_runtime,
        # copy_file_range streams (not a param: a change of them does not redo the merge)
        copy_streams=config["merge"]["streams"],
    params:
        pixel=PIXEL,
        layout=config["layout"],
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
        near_duplicate_crop_bits=(
            config["validate"]["near_duplicate_crop_bits"]
            if config["validate"]["near_duplicate_crops"]
            and (
                config["group_near_duplicates"]
                or config["filters"]["drop_duplicates"] == "near"
            )
            else None
        ),
        min_hash_quality=(
            config["validate"]["min_hash_quality"]
            if config["group_near_duplicates"]
            or config["filters"]["drop_duplicates"] == "near"
            else 0
        ),
        min_field_quality=(
            config["validate"]["min_field_quality"]
            if config["validate"]["near_duplicate_crops"]
            and (
                config["group_near_duplicates"]
                or config["filters"]["drop_duplicates"] == "near"
            )
            else 0
        ),
        # files of shards that no longer exist are removed from here (img2npz.shardfiles.prune)
        shards_dir="results/shards",
        # the per-row members the dataset holds: a release that adds one remakes the dataset
        members=[member.name for member in ROW_MEMBERS],
    script:
        "../../scripts/merge_npz.py"
