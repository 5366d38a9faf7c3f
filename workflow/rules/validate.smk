# Check the dataset against the contract; fail the run naming every failed check.


rule validate_report:
    input:
        npz="results/dataset.npz",
        failures="results/failures.tsv",
        images="results/index/images.parquet",
    output:
        json="results/validation.json",
        samples="results/report/samples.png",
    log:
        "results/logs/validate_report.log",
    conda:
        "../../envs/img2npz.yaml"
    resources:
        mem_mb=1000,
    params:
        pixel=PIXEL,
        labels=LABEL_MODE,
        max_failure_fraction=config["validate"]["max_failure_fraction"],
        samples=config["validate"]["samples"],
    script:
        "../../scripts/validate_report.py"
