import pytest

from tests.evaluation import fixtures as fx


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """Every benchmark's tiny copy in its published format (tests/evaluation/fixtures.py), as ``--data-root``."""
    return fx.write_all(tmp_path_factory.mktemp("benchmarks"))
