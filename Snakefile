# img2npz: a folder tree of images -> results/dataset.npz that PyTorch trains on directly.
# Rules chain: demo_source (only for the demo) -> index_images -> preprocess_shard -> merge_npz
# -> validate_report. The logic lives in the img2npz package; see README.md.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/index.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/validate.smk"


# Every output of the chain, not only the last: a file deleted by hand is built again by a plain
# rerun (Snakemake rebuilds only what a requested file needs, and skips a missing intermediate).
rule all:
    default_target: True
    input:
        rules.validate_report.output,
        rules.merge_npz.output,
        rules.index_images.output,
        all_shard_npzs,
        all_shard_failures,
        all_shard_stats,
        DEMO_SOURCE if config["source"] == DEMO_SOURCE else [],
