"""img2npz: turn a folder tree of images into NPZ datasets that PyTorch trains on directly.

The package mirrors the workflow's rules: :mod:`img2npz.scan` and :mod:`img2npz.index` (walk, label
and shard the tree), :mod:`img2npz.preprocess` (decode and resize one shard), :mod:`img2npz.merge`
(stream shards into ``dataset.npz``, with :mod:`img2npz.splits`) and :mod:`img2npz.validate` (check
the result; :mod:`img2npz.report` and :mod:`img2npz.htmlreport` draw it, :mod:`img2npz.changes` says
what a run changed).
Shared pieces live in :mod:`img2npz.decode`, :mod:`img2npz.resize`, :mod:`img2npz.npzformat` (with
:mod:`img2npz.crc32`, which lets the merge copy bytes it never reads) and
:mod:`img2npz.tsv`; :mod:`img2npz.dataset` is the PyTorch loader (``from img2npz import NPZDataset``).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so the workflow's jobs (which import this package) never import the loader or torch.
    if name in ("NPZDataset", "ShardedNPZDataset", "normalizer"):
        from img2npz import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'img2npz' has no attribute {name!r}")
