"""img2npz: turn a folder tree of images into NPZ datasets that PyTorch trains on directly.

:mod:`img2npz.contract` is the output contract: every file's format, and who writes and reads it;
:mod:`img2npz.npzformat` the bytes of every ``.npz``. The package mirrors the workflow's rules:

- index-images: :mod:`img2npz.scan` (walk the tree) and :mod:`img2npz.index` (label it, and place
  new images in new shards with :mod:`img2npz.allocation`, sized by :mod:`img2npz.sharding`);
- preprocess-shard: :mod:`img2npz.preprocess`, with :mod:`img2npz.decode`, :mod:`img2npz.resize`
  and :mod:`img2npz.dtypes` for the pixels, :mod:`img2npz.fingerprint` for each row's perceptual
  hash, :mod:`img2npz.filters` for what is left out, and :mod:`img2npz.rowsource` for the rows a
  compaction copies;
- merge-npz: :mod:`img2npz.merge`, with :mod:`img2npz.filecopy` (file-to-file copies),
  :mod:`img2npz.splits`, :mod:`img2npz.dedupe` (the copies ``filters.drop_duplicates`` drops) and
  :mod:`img2npz.shardfiles` (the shard files pruned, and linked into the ``shards`` layout);
- validate-report: :mod:`img2npz.validate` runs :mod:`img2npz.checks` on
  :mod:`img2npz.facts` (with :mod:`img2npz.pixelpass`, the one pass over the pixels), and
  :mod:`img2npz.report` writes the pictures (:mod:`img2npz.pictures`), the page
  (:mod:`img2npz.htmlreport`) and the change report (:mod:`img2npz.changes`).

Shared: :mod:`img2npz.neardup` (near-duplicates among the hashes, without comparing all pairs),
:mod:`img2npz.tsv`, :mod:`img2npz.atomic`, :mod:`img2npz.crc32`, :mod:`img2npz.treedigest`,
:mod:`img2npz.joblog`, :mod:`img2npz.config`. :mod:`img2npz.dataset` is the PyTorch loader
(``from img2npz import NPZDataset``); it imports none of the workflow's steps.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so the workflow's jobs (which import this package) never import the loader or torch.
    if name in ("NPZDataset", "normalizer"):
        from img2npz import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'img2npz' has no attribute {name!r}")
