"""Rule demo_source: write the deterministic demo tree."""

from img2npz.demo import make_demo_tree
from img2npz.joblog import rule_logging

with rule_logging(snakemake.log[0]) as log:  # noqa: F821
    count = make_demo_tree(snakemake.output[0])  # noqa: F821
    log.info("wrote %d demo files to %s", count, snakemake.output[0])  # noqa: F821
