"""Rule shards: the shard table of a shards-only build, and the shards folder pruned (no merge)."""

from img2npz.changes import write_shard_table
from img2npz.contract import ShardStats
from img2npz.joblog import rule_logging
from img2npz.kept import dataset_rows, prune

with rule_logging(snakemake.log[0]) as log:  # noqa: F821
    inputs, params, output = snakemake.input, snakemake.params, snakemake.output  # noqa: F821
    stats = {path.rsplit("/", 1)[-1].removesuffix(".stats.json"): ShardStats.load(path) for path in inputs.stats}
    write_shard_table(list(inputs.npzs), stats, output.shards)
    removed = prune(params.shards_dir, dataset_rows(stats), None)
    log.info(
        "%d shards, %d images; %d files of old shards removed",
        len(stats),
        sum(s.images for s in stats.values()),
        removed,
    )
