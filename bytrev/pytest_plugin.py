"""pytest plugin (registered by bytrev's `pytest11` entry point): functions marked with
`bytrev.testing.verify` in test modules become the tests `name[gradient]` and
`name[inverse]`, hypothesis property tests that shrink a failure to a minimal input."""
import pytest


def pytest_pycollect_makeitem(collector, name, obj):
    if not callable(obj) or not hasattr(obj, "__bytrev_verify__"):
        return None
    from .testing import properties
    return [pytest.Function.from_parent(collector, name=f"{name}[{prop}]", callobj=test)
            for prop, test in properties(obj).items()]
