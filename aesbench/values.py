"""What counts as a number in what aesbench reads: one test for each of the two meanings.

`is_number` is for values that are recorded as they are (a task's protocol, options, results records,
prediction-file headers, label files): a JSON or YAML number, so a numpy scalar is refused. `finite_number`
is for values a model computes (scores, attribute scores), which may be numpy scalars and are turned into
Python floats before anything records them. Both refuse bools (True is an int to Python), NaN and infinities;
on what JSON and YAML give they agree.
"""

from __future__ import annotations

import math
import numbers


def is_number(value) -> bool:
    """A finite Python int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def finite_number(value) -> bool:
    """A finite real number of any numeric type (numpy scalars included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
