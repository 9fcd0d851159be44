"""A regression, or the stream's usual variation? The guard's noise gate (issue 18 §3).

Prequential accuracy over a window of ``W`` events moves on its own: by binomial noise
(``sqrt(p(1-p)/W)``) on a stationary stream, and by much more on an honest stream whose
difficulty wanders (Elec2's 500-event windows range over 0.75–0.93). A fixed ``drop`` is many
standard deviations on the first kind and about two on the second, where it fires on stretches
the stream has shown before. So before a rollback or a quarantine the guard asks whether the
fall is beyond ``z`` standard deviations of a difference of two windows (``z·σ·√2``), with σ
the larger of the binomial noise at the reference accuracy and the spread of the stream's own
earlier window accuracies: the reference window and up to :data:`WINDOWS` − 1 whole windows
before it, back to where the guard's watch began, never the agent's first window (a cold
learner's warm-up is not variation). The spread is robust, the median absolute deviation
(× :data:`MAD_SIGMA`): one earlier anomaly (an attack that was only alerted on, say) does not
widen the gate for the next ones; it would take most of the last windows. Fewer than
:data:`MIN_WINDOWS` windows: the binomial noise alone. Within it, the regression is recorded as
an ``alert`` with the figures; beyond it, the guard goes on to its check
(:mod:`workers.actors.guard_check`).

Every window's accuracy comes from the per-version running totals
(:meth:`storage.repository.quality.Quality.tested_at`, one indexed lookup a boundary): at most
``WINDOWS + 1`` lookups at a confirmed alarm, never a scan.
:func:`window_accuracies` is checked against the accuracies of the raw hits
(tests/test_guard_spread.py).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from storage.repository.quality import window_accuracy

__all__ = ["window_accuracies", "Spread", "spread", "WINDOWS", "MIN_WINDOWS", "MAD_SIGMA"]

WINDOWS = 8  # windows the spread is measured on, the reference window included
MIN_WINDOWS = 3  # fewer: the binomial noise alone
MAD_SIGMA = 1.4826  # the median absolute deviation times this estimates σ of a normal sample


def window_accuracies(repo: Any, agent_id: str, end: int, window: int, floor: int,
                      count: int = WINDOWS) -> list[float]:
    """Accuracies of up to ``count`` consecutive windows of ``window`` tested events ending at
    ``end`` (newest first; whole versions: each boundary is the last version at or before it),
    none starting before ``max(floor, window)``."""
    out: list[float] = []
    hi = repo.tested_at(agent_id, end)
    start = max(floor, window)
    while hi is not None and len(out) < count and hi[0] - window >= start:
        lo = repo.tested_at(agent_id, hi[0] - window)
        acc = None if lo is None or lo[0] < start else window_accuracy(hi[0], hi[1], (lo[0], lo[1]))
        if acc is None:  # no whole window left (or no event between the two)
            break
        out.append(acc)
        hi = lo
    return out


@dataclass(frozen=True)
class Spread:
    sigma: float  # the standard deviation a window's accuracy is taken to have
    windows: int  # earlier windows it was measured on (0: the binomial noise alone)
    need: float  # the fall beyond the stream's variation: z·σ·√2

    def describe(self, fall: float, z: float) -> str:
        how = (f"the spread of its last {self.windows} windows" if self.windows
               else "binomial noise (too few earlier windows)")
        return (f"a fall of {fall:.3f} is within the stream's own variation: {z:g} sd of a "
                f"difference of two windows is {self.need:.3f} (sd {self.sigma:.3f}, {how})")


def spread(accuracies: list[float], ref: float, window: int, z: float) -> Spread:
    """σ: the larger of the binomial noise at ``ref`` and the robust spread of ``accuracies``
    (``MAD_SIGMA`` × their median absolute deviation, when there are at least
    :data:`MIN_WINDOWS`)."""
    sigma = math.sqrt(max(ref * (1 - ref), 0.0) / window)
    n = len(accuracies) if len(accuracies) >= MIN_WINDOWS else 0
    if n:
        med = statistics.median(accuracies)
        sigma = max(sigma, MAD_SIGMA * statistics.median(abs(a - med) for a in accuracies))
    return Spread(sigma, n, z * sigma * math.sqrt(2))
