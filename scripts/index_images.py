"""Rule index_images: label and shard the tree the main process walked (walk it only if that is gone)."""

from img2npz.index import run_index
from img2npz.joblog import rule_logging
from img2npz.scan import Listing, listing_path

with rule_logging(snakemake.log[0]) as log:  # noqa: F821
    params, output = snakemake.params, snakemake.output  # noqa: F821
    saved = listing_path(params.listings, params.fingerprint)
    listing = Listing.load(saved) if saved.is_file() else None
    log.info("tree listing: %s", saved if listing is not None else "not saved, walking the tree")
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
    )
