"""The cyclic garbage collector in a long-running service process.

CPython runs a full collection after about 70,000 net allocations of container objects
(thresholds 700, 10, 10), and a full collection walks every tracked object of the process: in
a Ray actor, hundreds of thousands of them (modules, functions, Ray's and SQLAlchemy's
internals), all alive as long as the process, walked again and again while the actor
allocates a few dicts and tuples per event. :func:`settle_gc`, called once a process has
started, moves everything alive then out of the collector's walks (``gc.freeze``) and makes
the youngest generation's collections rarer; garbage cycles made later are still collected,
only in larger batches.

>>> import gc
>>> before = gc.get_threshold()
>>> settle_gc(); gc.get_threshold()[0] >= 10_000 and gc.get_freeze_count() > 0
True
>>> gc.unfreeze(); gc.set_threshold(*before)
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000  # allocations between collections of the youngest generation


def settle_gc(young: int = YOUNG_THRESHOLD) -> None:
    """Collect once, freeze what is alive, and raise the youngest generation's threshold."""
    gc.collect()
    gc.freeze()
    t0, t1, t2 = gc.get_threshold()
    gc.set_threshold(max(t0, young), t1, t2)
