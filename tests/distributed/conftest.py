import pytest

from tests.conftest import write_toy_dataset


@pytest.fixture(scope="package")
def data(tmp_path_factory):
    """Skewed ids (repeated inside every batch and across ranks); table C2 has one row."""
    root = tmp_path_factory.mktemp("dist")
    return write_toy_dataset(root / "ds", rows=1500, table_rows=(50, 1, 200, 7))
