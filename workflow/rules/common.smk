# Config validation and the input functions the rules share, so rule files read as plain steps.

import atexit
import glob
import os
import shutil
import sys

from snakemake.exceptions import IncompleteCheckpointException
from snakemake.logging import logger

from img2npz.config import (
    ConfigError,
    DEMO_SOURCE,
    check_paths,
    command_line_strings,
    label_mode,
    load_schema,
    pixel_config,
    shard_bounds,
    validate_config,
)
from img2npz.contract import ROW_MEMBERS, SHARD_FORMAT, IndexSummary
from img2npz.index import lost_manifests
from img2npz.manifests import manifest_ids
from img2npz.scan import EmptyTreeError, tree_fingerprint
from img2npz.runend import end_run, graceful_terms, plain_interrupts

# Jobs are already a process per core: keep numpy's BLAS from starting a thread per core in each
# job (measured: a third of a shard job's import CPU), where no job does linear algebra anyway.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

try:
    # the package's own schema; source=2024 as typed, not the number Snakemake made of it
    _schema = load_schema()
    config = validate_config(
        command_line_strings(config, workflow.config_settings.config_args, _schema),
        _schema,
    )
    check_paths(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None

PIXEL = pixel_config(config)
LABEL_MODE = label_mode(config)
SHARD_BOUNDS = shard_bounds(config)


# the dataset, by the config's layout (img2npz.merge): one file, or a folder's row table
DATASET = (
    "results/dataset.npz" if config["layout"] == "file" else "results/dataset/index.npz"
)
LISTINGS = "results/index/listing"
MANIFESTS = "results/index/shards"
MANIFEST_KEYS = "results/index/keys"  # a cache of the manifests (img2npz.manifests)
INDEX_SUMMARY = "results/index/summary.json"

# A manifest deleted by hand: take the index's summary away too, so that Snakemake, which sees the
# manifests only as one directory, runs the index again and it writes the lost ones back. Also in a
# dry run (it cannot be told apart here; it then shows the index due), and harmless to an index job
# under way: it writes its summary after its manifests.
if workflow.is_main_process and lost_manifests(MANIFESTS, INDEX_SUMMARY):
    logger.warning(
        "Manifests under results/index/shards were deleted: the index runs again"
    )
    os.remove(INDEX_SUMMARY)
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
    """The labels CSV when there is one; the generated demo tree when it is the source.

    Through the demo checkpoint only while the demo does not exist yet (it is written whole, by a
    rename). Once it exists, a plain input: with one checkpoint behind another, Snakemake takes the
    old shard manifests as final while the index is about to rewrite them, and plans jobs for
    shards that are about to vanish (seen when a folder went back to the demo from another source).
    """
    inputs = []
    if config["source"] == DEMO_SOURCE:
        exists = os.path.isdir(DEMO_SOURCE)
        inputs.append(
            DEMO_SOURCE if exists else checkpoints.demo_source.get().output[0]
        )
    if LABEL_MODE == "csv":
        inputs.append(config["labels"])
    return inputs


def shard_ids():
    """Shard ids from the manifests the index_images checkpoint wrote."""
    return manifest_ids(checkpoints.index_images.get().output.manifests)


def shard_priority(wildcards, input):
    """The longest shard jobs first, so that the last to start are the short ones and the cores
    finish together: a shard's manifest bytes, about its lines (a stat, no read)."""
    try:
        return os.path.getsize(input.manifest)
    except OSError:
        return 0


def all_shard_npzs(wildcards):
    return expand("results/shards/{shard}.npz", shard=shard_ids())


def all_shard_failures(wildcards):
    return expand("results/shards/{shard}.failures.tsv", shard=shard_ids())


def all_shard_stats(wildcards):
    return expand("results/shards/{shard}.stats.json", shard=shard_ids())


# Ctrl-C reaches every process of the terminal's group: jobs ignore it, so the ones under way
# finish (and are kept) while Snakemake starts no more, instead of each dying with a traceback.
# After Snakemake's own strict mode, which it sets only for bash.
shell.prefix(
    ("set -euo pipefail; " if (shell.get_executable() or "").endswith("bash") else "")
    + "trap '' INT; "
)
STOPPED = (  # what Snakemake logs on a Ctrl-C, and on a SIGTERM
    "Terminating processes on user request",
    "Will exit after finishing currently running jobs",
)
INTERRUPTED = (
    "img2npz: the run was stopped (Ctrl-C or SIGTERM); every job that finished is kept: "
    "run the same command again to resume"
)


def explain_interruption(logfiles):
    """After a Ctrl-C or SIGTERM, end the output with one line that says so and how to go on
    (Snakemake's last line, "At least one job did not complete successfully", reads like a
    failure)."""
    for logfile in logfiles if isinstance(logfiles, list) else [logfiles]:
        try:
            with open(logfile, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except (OSError, TypeError):
            continue
        if any(said in text for said in STOPPED):
            atexit.register(print, INTERRUPTED, file=sys.stderr)
            return


onsuccess:
    end_run()  # img2npz.runend: exit as soon as the last job is done


onerror:
    explain_interruption(log)
    end_run()  # img2npz.runend: exit as soon as the last job is done


def remove_stale_backups():
    """Snakemake copies an update() output (the index's manifests, the catalogue) aside while its
    job runs, and fails to start that job again while a copy is left: a killed run leaves one. No
    job runs yet when this is called, so every copy there is stale."""
    shutil.rmtree(
        os.path.join(workflow.persistence.path, "backups"), ignore_errors=True
    )


onstart:
    remove_stale_backups()
    plain_interrupts()  # img2npz.runend: Ctrl-C stays a KeyboardInterrupt the scheduler catches
    graceful_terms()  # and SIGTERM's handler cannot wait for a lock the main thread holds


# Resources, declared by the rules so a cluster profile needs no numbers of its own. mem_mb and
# runtime (minutes) grow with each retry (`retries` in a profile).
BYTES_PER_PIXEL = {"uint8": 1, "float16": 2, "float32": 4}[PIXEL["dtype"]]
ROW_MB = PIXEL["size"][0] * PIXEL["size"][1] * 3 * BYTES_PER_PIXEL / 2**20
# Decode + resize of a large photo on a slow node and file system; a busy cluster file system.
SLOW_SECONDS_PER_IMAGE = 0.1
SLOW_MB_PER_SECOND = 50


def shard_mem_mb(wildcards, attempt):
    """A shard job holds one image at a time (pixels stream into the npz): the interpreter, the
    largest image Pillow may decode (preprocess.max_image_pixels at 4 bytes a pixel, twice for a
    mode conversion) and a few output rows. Independent of the shard's size."""
    decode_mb = config["preprocess"]["max_image_pixels"] * 4 * 2 / 2**20
    return int(200 + decode_mb + 8 * ROW_MB) * attempt


def indexed(field):
    """A field of what the index job found (img2npz.contract.IndexSummary: images, the shard bounds
    it used), or 0 while it is yet to run: a dry run prints the jobs after it before any shard is
    known (and Snakemake fails on a resource function that raises there). A small JSON file:
    pyarrow stays out of the main process (imported there, it made Snakemake hang on SIGTERM now
    and then).
    """
    try:
        summary = IndexSummary.load(checkpoints.index_images.get().output.summary)
    except (IncompleteCheckpointException, FileNotFoundError):
        return 0
    return getattr(summary, field)


def shard_runtime(wildcards, attempt):
    """Minutes for the largest shard (the index's max_images) at a slow pace per image."""
    return int(10 + indexed("max_images") * SLOW_SECONDS_PER_IMAGE / 60) * attempt


def dataset_runtime(wildcards, attempt):
    """Minutes to copy (merge) or read (validate) the whole dataset at a slow file system's speed."""
    return int(10 + indexed("images") * ROW_MB / SLOW_MB_PER_SECOND / 60) * attempt


def merge_mem_mb(wildcards, attempt):
    """Each image's place, label, path and row members (hashes, CRCs), about 500 bytes an image:
    the merge gathers them from every shard; never the pixels (copied file to file, or not at all).
    """
    return int(1000 + indexed("images") * 500 / 2**20) * attempt


def validate_mem_mb(wildcards, attempt):
    """Flat except for per-image arrays: labels and fingerprints, 24 bytes an image, and paths."""
    return int(1000 + indexed("images") * 600 / 2**20) * attempt
