"""arrow: the index, merge and validate jobs read and write parquet without importing pandas."""

import importlib.util
import subprocess
import sys

import pytest

PROGRAM = """
import io, sys
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from img2npz.arrow import hide_pandas
assert hide_pandas()
buffer = io.BytesIO()
pq.write_table(pa.table({"row": pa.array(np.arange(3)), "path": pa.array(["a", "b", "c"])}), buffer)
table = pq.ParquetFile(io.BytesIO(buffer.getvalue())).read()
print(table.column("row").to_numpy().tolist(), table.column("path").to_pylist(), "pandas" in sys.modules)
"""


@pytest.mark.skipif(importlib.util.find_spec("pandas") is None, reason="needs pandas installed")
def test_parquet_round_trip_with_pandas_installed_never_imports_it():
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[0, 1, 2] ['a', 'b', 'c'] False"


def test_nothing_hidden_where_pandas_is_imported_already():
    program = "import sys, types; sys.modules['pandas'] = types.ModuleType('pandas')\n"
    program += "from img2npz.arrow import hide_pandas; print(hide_pandas(), len(sys.meta_path))"
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)
    plain = subprocess.run(
        [sys.executable, "-c", "import sys, img2npz.arrow; print(len(sys.meta_path))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == ["False", plain.stdout.strip()]
