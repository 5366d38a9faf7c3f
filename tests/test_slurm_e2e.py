"""End-to-end on a real SLURM cluster: one node started by tests/slurm/start-cluster.sh (Debian's
slurmctld, slurmd and munge, installed by .ci/run), the workflow submitted through
``snakemake --profile profiles/slurm`` and Snakemake's SLURM executor plugin."""

import hashlib
import re
import subprocess

import pytest
from conftest import REPO, make_tree, run_snakemake, write_config

pytestmark = pytest.mark.slow

# The test cluster has no accounting (sacct) and no accounts: ask squeue for job states.
LOCAL_CLUSTER = (
    "--slurm-status-command",
    "squeue",
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks",
    "1",
)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def job_field(job_id, field):
    shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    return re.search(rf"\b{field}=(\S*)", shown).group(1)


def test_the_workflow_runs_through_slurm_and_gives_the_local_bytes(slurm_cluster, tmp_path):
    make_tree(tmp_path / "src", per_class=9)
    config = write_config(
        tmp_path / "config.yaml",
        source=str(tmp_path / "src"),
        image={"size": [16, 16]},
        shards={"target_images": 4, "min_images": 1, "max_images": 8},
        validate={"max_failure_fraction": 0.2},
    )
    run_snakemake(tmp_path / "local", config)
    walks = tmp_path / "walks.log"
    result = run_snakemake(
        tmp_path / "slurm",
        config,
        "--profile",
        str(REPO / "profiles" / "slurm"),
        *LOCAL_CLUSTER,
        "--slurm-keep-successful-logs",
        "--group-components",
        "shards=3",
        cores=4,  # the most CPUs one job asks for (a bundle of shard jobs, the merge, validate)
        env={"IMG2NPZ_SCAN_LOG": str(walks)},
    )
    log = result.stdout + result.stderr
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/(\w+)/", log)[::-1])
    kinds = sorted(set(submitted.values()))
    assert kinds == [
        "group_shards_preprocess_shard",
        "rule_index_images",
        "rule_merge_npz",
        "rule_validate_report",
    ]
    for job_id in submitted:  # every one ran as a SLURM job and ended well
        assert job_field(job_id, "JobState") == "COMPLETED", job_id
    shards = len(list((tmp_path / "slurm" / "results" / "index" / "shards").glob("*.tsv")))
    bundles = [job for job, kind in submitted.items() if kind == "group_shards_preprocess_shard"]
    assert shards > 3 and len(bundles) == -(-shards // 3)  # shards bundled three to a SLURM job
    assert all(int(job_field(job, "NumCPUs")) <= 4 for job in bundles)
    local, remote = tmp_path / "local" / "results", tmp_path / "slurm" / "results"
    assert sha(remote / "dataset.npz") == sha(local / "dataset.npz")
    assert (remote / "failures.tsv").read_bytes() == (local / "failures.tsv").read_bytes()
    # Every SLURM job re-parsed the Snakefile (its log shows a DAG being built), yet the tree was
    # walked once, by the main process on the submitting side.
    job_logs = list((tmp_path / "slurm" / ".snakemake" / "slurm_logs").glob("*/*.log"))
    assert job_logs and all("Building DAG of jobs" in path.read_text() for path in job_logs)
    lines = walks.read_text().splitlines()
    assert len(lines) == 1 and "snakemake" in lines[0]
