"""JSON for the store's JSON columns: orjson (fast on long float lists, the bulk of vector
event payloads) with the strictness of ``json.dumps(allow_nan=False)``: NaN and ±Inf are
refused (orjson alone would write them as ``null``), so what is stored reads back equal.

>>> loads(dumps({"input": [1.5, 2.0], "target": "a"}))
{'input': [1.5, 2.0], 'target': 'a'}
>>> dumps({"input": [float("nan")]})
Traceback (most recent call last):
...
ValueError: Out of range float values are not JSON compliant: nan
"""

from __future__ import annotations

import math
from typing import Any

import orjson


def _check_finite(obj: Any) -> None:
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"Out of range float values are not JSON compliant: {obj}")
    elif isinstance(obj, list):
        try:  # the hot case, a vector: one C-level pass; NaN/Inf make the sum non-finite
            total = sum(obj, 0.0)  # (a float sum: only finiteness matters, not exactness)
        except TypeError:  # not all numbers: walk it
            for x in obj:
                _check_finite(x)
            return
        except OverflowError:  # an int too large for a float
            total = math.inf
        if not math.isfinite(total):
            for x in obj:
                _check_finite(x)
    elif isinstance(obj, dict):
        for x in obj.values():
            _check_finite(x)


def dumps(obj: Any) -> str:
    """``obj`` as JSON text; ValueError for NaN/Inf, TypeError for what JSON cannot hold."""
    _check_finite(obj)
    return orjson.dumps(obj).decode()


def loads(text: str | bytes) -> Any:
    return orjson.loads(text)
