"""Field-by-field equality of result objects (``DatasetResult`` subclasses), for round-trip tests."""
import dataclasses
import math

import numpy as np


def assert_same_result(got, want) -> None:
    """Every field of ``got`` equals ``want``'s: arrays exactly (NaN == NaN, same dtype kind), scalars by value and type."""
    assert type(got) is type(want)
    for f in dataclasses.fields(want):
        a, b = getattr(got, f.name), getattr(want, f.name)
        if isinstance(b, np.ndarray):
            assert isinstance(a, np.ndarray) and a.dtype.kind == b.dtype.kind, f.name
            np.testing.assert_array_equal(a, b, err_msg=f.name)
        elif isinstance(b, float) and math.isnan(b):
            assert isinstance(a, float) and math.isnan(a), f.name
        else:
            assert a == b and type(a) is type(b), (f.name, a, b)
