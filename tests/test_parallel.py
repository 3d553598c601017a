"""The task map: order kept, settings of the caller in force inside the workers."""

import pytest

import preimage as pim
from preimage._parallel import map_tasks


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_map_tasks_keeps_order_and_settings(workers):
    with pim.configure(feasibility_tol=1e-5):
        tolerances = map_tasks(lambda _: pim.current().feasibility_tol, range(20), workers=workers)
    assert tolerances == [1e-5] * 20
    assert map_tasks(lambda i: i * i, range(50), workers=workers) == [i * i for i in range(50)]


def test_map_tasks_propagates_errors():
    def fail(i):
        if i == 3:
            raise ValueError("task 3")
        return i

    with pytest.raises(ValueError, match="task 3"):
        map_tasks(fail, range(6), workers=2)
