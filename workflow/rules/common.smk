# Config validation and the input functions the rules share, so rule files read as plain steps.

import glob
import os

from img2npz.config import (
    ConfigError,
    DEMO_SOURCE,
    check_paths,
    label_mode,
    load_schema,
    pixel_config,
    shard_bounds,
    validate_config,
)
from img2npz.scan import EmptyTreeError, tree_fingerprint

try:
    config = validate_config(
        config, load_schema(workflow.source_path("../schemas/config.schema.yaml"))
    )
    check_paths(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None

PIXEL = pixel_config(config)
LABEL_MODE = label_mode(config)
SHARD_BOUNDS = shard_bounds(config)


LISTINGS = "results/index/listing"
_FINGERPRINTS = {}


def source_fingerprint():
    """Digest of the image tree, taken once per invocation in the main process only.

    Passed to index_images as a param, so any added, removed or changed image reruns the index
    with no flag from the user. The walk is saved under LISTINGS for the index job, so that job does
    not walk the tree again; other job processes (cluster jobs re-parse this file) never walk it. A
    tree that does not exist yet (the demo, before its rule ran) is not remembered, so the index job
    planned after the demo checkpoint sees the real tree.
    """
    if not workflow.is_main_process:
        return saved_fingerprint()
    if "source" not in _FINGERPRINTS:
        try:
            value = tree_fingerprint(
                config["source"], config["extensions"], save_to=LISTINGS
            )
        except EmptyTreeError as error:
            raise WorkflowError(f"config key 'source': {error}") from None
        if value == "missing":
            return value
        _FINGERPRINTS["source"] = value
    return _FINGERPRINTS["source"]


def saved_fingerprint():
    """In a job process: the fingerprint whose listing the main process saved (no walk)."""
    saved = sorted(glob.glob(f"{LISTINGS}/*.npz"))
    return os.path.basename(saved[-1]).removesuffix(".npz") if saved else "unknown"


def index_inputs(wildcards):
    """The labels CSV when there is one; the generated demo tree when it is the source."""
    inputs = []
    if config["source"] == DEMO_SOURCE:
        inputs.append(checkpoints.demo_source.get().output[0])
    if LABEL_MODE == "csv":
        inputs.append(config["labels"])
    return inputs


def shard_ids():
    """Shard ids from the manifests the index_images checkpoint wrote."""
    manifests = checkpoints.index_images.get().output.manifests
    return sorted(
        name.removesuffix(".tsv")
        for name in os.listdir(manifests)
        if name.endswith(".tsv") and not name.startswith(".")
    )


def all_shard_npzs(wildcards):
    return expand("results/shards/{shard}.npz", shard=shard_ids())


def all_shard_failures(wildcards):
    return expand("results/shards/{shard}.failures.tsv", shard=shard_ids())


def shard_mem_mb(wildcards, attempt):
    """A shard's array at its largest, plus room for decoding one big image."""
    height, width = PIXEL["size"]
    itemsize = {"uint8": 1, "float16": 2, "float32": 4}[PIXEL["dtype"]]
    array_mb = SHARD_BOUNDS[2] * height * width * 3 * itemsize / 2**20
    return int(array_mb + 500) * attempt
