"""Rule preprocess_shard: decode one shard's images (Pillow and numpy only)."""

from img2npz.filters import Filters
from img2npz.joblog import rule_logging
from img2npz.preprocess import process_shard

with rule_logging(snakemake.log[0]):  # noqa: F821
    stats = process_shard(
        manifest=snakemake.input.manifest,  # noqa: F821
        source=snakemake.params.source,  # noqa: F821
        pixel=dict(snakemake.params.pixel),  # noqa: F821
        out_npz=snakemake.output.npz,  # noqa: F821
        out_failures=snakemake.output.failures,  # noqa: F821
        timeout_s=snakemake.params.timeout_s,  # noqa: F821
        max_pixels=snakemake.params.max_pixels,  # noqa: F821
        filters=Filters.from_config(snakemake.params.filters),  # noqa: F821
    )
    stats.save(snakemake.output.stats)  # noqa: F821
