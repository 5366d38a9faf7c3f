# The embedded demo tree (config source: results/demo), generated deterministically on first run.
# A checkpoint, so index_images is planned only after the tree exists and its fingerprint is real.


checkpoint demo_source:
    output:
        directory("results/demo"),
    log:
        "results/logs/demo_source.log",
    conda:
        "../../envs/img2npz.yaml"
    resources:
        mem_mb=500,
        runtime=10,
    script:
        "../../scripts/make_demo.py"
