"""Rule index_images: walk the source tree and write one manifest per shard."""

from img2npz.index import run_index
from img2npz.joblog import rule_logging

with rule_logging(snakemake.log[0]):  # noqa: F821
    params, output = snakemake.params, snakemake.output  # noqa: F821
    run_index(
        source=params.source,
        extensions=params.extensions,
        labels=params.labels,
        label_csv=params.labels_csv,
        bounds=tuple(params.shards),
        manifest_dir=output.manifests,
        images_table=output.images,
        classes_table=output.classes,
    )
