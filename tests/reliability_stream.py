"""A client side for the reliability tests: stream event batches over HTTP in order, re-send
them after a failure, wait until everything is applied, and check the store against a reference.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import numpy as np

from tests.reliability_helpers import check_store
from tests.workers_helpers import reference

Batches = list[tuple[str, list[dict[str, Any]]]]


class Sender:
    """Streams (agent, batch) pairs in order in a thread.

    A batch counts as acknowledged on 202; 429 is retried; a transport error stops the thread
    (the service is gone) unless ``retry_errors``, which also retries 5xx answers.
    """

    def __init__(self, url: str, key: str, batches: Batches, start: int = 0,
                 retry_errors: bool = False) -> None:
        self.url, self.key, self.batches, self.next = url, key, batches, start
        self.retry_errors = retry_errors  # retry 5xx answers (the database is down)
        self.acked: list[int] = []
        self.refused: list[tuple[int, int, str]] = []
        self.retried: list[int] = []  # status codes answered while retrying
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30,
                          headers={"Authorization": f"Bearer {self.key}"}) as c:
            while self.next < len(self.batches):
                agent, batch = self.batches[self.next]
                try:
                    r = c.post(f"/v1/agents/{agent}/events", json={"events": batch})
                except httpx.HTTPError:
                    if self.retry_errors:
                        self.retried.append(0)
                        time.sleep(0.1)
                        continue
                    return  # the service is gone: this batch is not acknowledged
                if r.status_code == 202:
                    out = r.json()
                    if out["accepted"] + out["duplicates"] != len(batch):
                        self.refused.append((self.next, 202, r.text[:200]))
                        return
                    self.acked.append(self.next)
                    self.next += 1
                elif r.status_code == 429:  # backpressure: retry the same batch
                    time.sleep(0.05)
                elif r.status_code >= 500 and self.retry_errors:
                    self.retried.append(r.status_code)
                    time.sleep(0.1)
                else:
                    self.refused.append((self.next, r.status_code, r.text[:200]))
                    return


def resend(url: str, key: str, batches: Batches, upto: int, acked: set[int]) -> int:
    """Re-send batches [0, upto): acknowledged ones must be all duplicates; every other batch
    either all accepted or all duplicates (its transaction committed before the crash but the
    answer was lost). Returns the number of events newly accepted."""
    new = 0
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"}) as c:
        for i in range(upto):
            agent, batch = batches[i]
            r = c.post(f"/v1/agents/{agent}/events", json={"events": batch})
            assert r.status_code == 202, r.text
            out = r.json()
            if i in acked:
                assert out["duplicates"] == len(batch) and out["accepted"] == 0, (i, out)
            else:
                assert (out["accepted"], out["duplicates"]) in ((len(batch), 0), (0, len(batch))), \
                    (i, out)
                new += out["accepted"]
    return new


def wait_all_applied(url: str, key: str, agents: list[str], n_each: int,
                     timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as c:
        while True:
            infos = [c.get(f"/v1/agents/{a}").json() for a in agents]
            if all(i["events_applied"] == i["events_received"] == n_each for i in infos):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not all applied after {timeout}s: "
                                     f"{[(i['events_received'], i['events_applied']) for i in infos]}")
            time.sleep(0.1)


def check_against_reference(database_url: str, config: dict[str, Any], batches: Batches) -> None:
    """:func:`check_store` for every agent, and its head state equals a single-process
    reference learner fed the same events in order (float rounding aside)."""
    for a in dict.fromkeys(ag for ag, _ in batches):
        sent = [e for ag, b in batches if ag == a for e in b]
        head = check_store(database_url, a, [e["id"] for e in sent])
        ref_layers, ref_labels = reference(config, sent).state
        assert head["labels"] == list(ref_labels)
        for name, want in ref_layers.items():
            got = head["layers"][name]
            err = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-12)
            assert err < 1e-6, f"{a} layer {name}: rel err {err:.2e} vs the reference"
