"""Rule validate_report: check the dataset (either layout), draw it and write the HTML report."""

from img2npz.arrow import hide_pandas
from img2npz.changes import read_shard_table
from img2npz.checks import Thresholds
from img2npz.joblog import rule_logging
from img2npz.report import ReportFiles
from img2npz.validate import validate_dataset

hide_pandas()  # pyarrow would import it: 0.2-0.45 s a job
with rule_logging(snakemake.log.main):  # noqa: F821
    inputs, params, output, log = snakemake.input, snakemake.params, snakemake.output, snakemake.log  # noqa: F821
    validate_dataset(
        npz=inputs.dataset,
        failures=inputs.failures,
        images_table=inputs.images,
        pixel=dict(params.pixel),
        label_mode=params.labels,
        limits=Thresholds.from_config(params.limits),
        samples=params.limits["samples"],
        out_json=output.json,
        files=ReportFiles(
            samples=output.samples,
            class_counts=output.class_counts,
            histograms=output.histograms,
            html=output.html,
            failed_html=log.html,
            changes=output.changes,
            catalogue=output.catalogue,
            near_duplicates=output.near_duplicates,
            near_pairs=output.near_pairs,
            failed_near_duplicates=log.near_duplicates,
        ),
        shards=read_shard_table(inputs.shards),
        threads=snakemake.threads,  # noqa: F821
        index_summary=inputs.summary,
        layout=params.layout,
        copy_check=inputs.verified,
    )
