"""Rule merge_npz: stream all shards into results/dataset.npz, then prune the shards folder."""

from img2npz.changes import write_shard_table
from img2npz.contract import ShardStats, read_classes
from img2npz.joblog import rule_logging
from img2npz.kept import dataset_rows, prune
from img2npz.merge import merge_shards

with rule_logging(snakemake.log[0]):  # noqa: F821
    inputs, params, output = snakemake.input, snakemake.params, snakemake.output  # noqa: F821
    merge_shards(
        shard_npzs=list(inputs.npzs),
        shard_failures=list(inputs.failures),
        classes=read_classes(inputs.classes),
        pixel=dict(params.pixel),
        out_npz=output.npz,
        out_failures=output.failures,
        compress=params.compress,
        splits=dict(params.splits) if params.splits else None,
        group_by=params.group_by,
        near_duplicate_bits=params.near_duplicate_bits,
        group_near_duplicates=params.group_near_duplicates,
        drop_duplicates=params.drop_duplicates,
        streams=snakemake.threads,  # noqa: F821
    )
    stats = {path.rsplit("/", 1)[-1].removesuffix(".stats.json"): ShardStats.load(path) for path in inputs.stats}
    write_shard_table(list(inputs.npzs), stats, output.shards)
    prune(params.shards_dir, dataset_rows(stats), None if params.compress else output.npz)
