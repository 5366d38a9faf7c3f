"""Keep pandas out of the jobs that use pyarrow (index, merge, validate).

Where pandas is installed, pyarrow imports it the first time it converts anything, to or from
numpy or Python (to learn whether an object is a pandas one, and in its C++ conversions):
0.2-0.45 s of every such job, which never uses pandas. ML environments nearly always have pandas;
so does ours with the SLURM plugin, which needs it. pyarrow without pandas is a supported setup:
it then takes the plain numpy paths.
"""

from __future__ import annotations

import importlib.abc
import sys


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas is kept out of img2npz's jobs (img2npz.arrow)")
        return None


def hide_pandas() -> bool:
    """From now on, in this process, ``import pandas`` fails as if it were not installed; False
    (and nothing done) where pandas is imported already. For job processes only."""
    if "pandas" in sys.modules:
        return False
    if not any(isinstance(finder, _NoPandas) for finder in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())
    return True
