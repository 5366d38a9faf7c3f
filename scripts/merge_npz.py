"""Rule merge_npz: gather the shards' rows into the dataset (either layout), then prune the shards folder."""

from img2npz.arrow import hide_pandas
from img2npz.changes import write_shard_table
from img2npz.contract import ShardStats, read_classes
from img2npz.joblog import rule_logging
from img2npz.merge import merge_shards
from img2npz.shardfiles import other_layout, prune, remove_other_layout

hide_pandas()  # pyarrow would import it: 0.2-0.45 s a job
with rule_logging(snakemake.log[0]) as log:  # noqa: F821
    inputs, params, output = snakemake.input, snakemake.params, snakemake.output  # noqa: F821
    merge_shards(
        images_table=inputs.images,
        shards_dir=params.shards_dir,
        classes=read_classes(inputs.classes),
        pixel=dict(params.pixel),
        out=output.dataset,
        out_failures=output.failures,
        layout=params.layout,
        compress=params.compress,
        splits=dict(params.splits) if params.splits else None,
        group_by=params.group_by,
        near_duplicate_bits=params.near_duplicate_bits,
        near_duplicate_crop_bits=params.near_duplicate_crop_bits,
        min_hash_quality=params.min_hash_quality,
        min_field_quality=params.min_field_quality,
        group_near_duplicates=params.group_near_duplicates,
        drop_duplicates=params.drop_duplicates,
        streams=min(snakemake.resources.copy_streams, snakemake.threads),  # noqa: F821 (at most --cores)
        threads=snakemake.threads,  # noqa: F821
        out_check=output.verified,
    )
    stats = {path.rsplit("/", 1)[-1].removesuffix(".stats.json"): ShardStats.load(path) for path in inputs.stats}
    write_shard_table(list(inputs.npzs), stats, output.shards)
    removed = prune(params.shards_dir, set(stats))
    log.info("%d files of shards no longer indexed removed", removed)
    # the other layout's dataset: its links would keep the bytes of pruned shards
    other = other_layout(output.dataset, params.layout)
    if remove_other_layout(other):
        log.info("%s (the other layout's dataset) removed", other)
