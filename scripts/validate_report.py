"""Rule validate_report: check results/dataset.npz and draw the sample grid."""

from img2npz.joblog import rule_logging
from img2npz.validate import validate_dataset

with rule_logging(snakemake.log[0]):  # noqa: F821
    inputs, params, output = snakemake.input, snakemake.params, snakemake.output  # noqa: F821
    validate_dataset(
        npz=inputs.npz,
        failures=inputs.failures,
        images_table=inputs.images,
        pixel=dict(params.pixel),
        label_mode=params.labels,
        max_failure_fraction=params.max_failure_fraction,
        samples=params.samples,
        out_json=output.json,
        out_samples=output.samples,
    )
