"""Rule index_images: label and shard the tree the main process walked (walk it only if that is gone)."""

from img2npz.arrow import hide_pandas
from img2npz.index import run_index
from img2npz.joblog import rule_logging
from img2npz.scan import listing_path, saved_listing

hide_pandas()  # pyarrow would import it: 0.2-0.45 s a job
with rule_logging(snakemake.log[0]) as log:  # noqa: F821
    params, output = snakemake.params, snakemake.output  # noqa: F821
    listing = saved_listing(params.listings, params.fingerprint)
    where = listing_path(params.listings, params.fingerprint)
    log.info("tree listing: %s", where if listing is not None else "not saved, walking the tree")
    run_index(
        source=params.source,
        extensions=params.extensions,
        labels=params.labels,
        label_csv=params.labels_csv,
        bounds=tuple(params.shards),
        manifest_dir=output.manifests,
        images_table=output.images,
        classes_table=output.classes,
        listing=listing,
        summary=output.summary,
        compaction=dict(params.compaction),
        keys_dir=params.manifest_keys,
    )
