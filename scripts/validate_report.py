"""Rule validate_report: check results/dataset.npz, draw it and write the HTML report."""

from img2npz.changes import read_shard_table
from img2npz.joblog import rule_logging
from img2npz.validate import ReportFiles, Thresholds, validate_dataset

with rule_logging(snakemake.log.main):  # noqa: F821
    inputs, params, output, log = snakemake.input, snakemake.params, snakemake.output, snakemake.log  # noqa: F821
    limits = dict(params.limits)
    validate_dataset(
        npz=inputs.npz,
        failures=inputs.failures,
        images_table=inputs.images,
        pixel=dict(params.pixel),
        label_mode=params.labels,
        limits=Thresholds(
            max_failure_fraction=limits["max_failure_fraction"],
            min_class_images=limits["min_class_images"],
            max_class_imbalance=limits["max_class_imbalance"],
            fail_on=tuple(limits["fail_on"]),
        ),
        samples=limits["samples"],
        out_json=output.json,
        files=ReportFiles(
            output.samples,
            output.class_counts,
            output.histograms,
            output.html,
            log.html,
            output.changes,
            output.catalogue,
        ),
        shards=read_shard_table(inputs.shards),
    )
