"""CPU seconds per process role, from ``/proc`` (Linux): what each part of a deployment spends
while a benchmark row runs, so a rate can be read as CPU per event per process.

>>> import time
>>> before, t = snapshot(), time.process_time()
>>> while time.process_time() - t < 0.05:  # 50 ms of CPU: a few of /proc's 10 ms ticks
...     pass
>>> by_role(before, snapshot(), own_pid=os.getpid())["this process"] >= 0.03
True
"""

from __future__ import annotations

import os

# (role, what its command line starts with or holds), first match wins
ROLES = (("HTTP workers", "workers.http_workers"), ("ingest actor", "ray::IngestActor"), ("learner", "ray::LearnerActor"),
         ("serving actor", "ray::ServingActor"), ("encoder actor", "ray::EncoderActor"),
         ("raylet", "/raylet"), ("gcs_server", "/gcs_server"), ("client process", "spawn_main"),
         ("other Ray", "ray"))


def _role(cmdline: str) -> str:
    for role, mark in ROLES:
        if mark in cmdline:
            return role
    return "other"


def snapshot() -> dict[int, tuple[float, str]]:
    """``{pid: (user + system CPU seconds, command line)}`` of every readable process."""
    hz = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[float, str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        out[int(name)] = ((int(fields[11]) + int(fields[12])) / hz, cmd)
    return out


def by_role(before: dict[int, tuple[float, str]], after: dict[int, tuple[float, str]],
            own_pid: int) -> dict[str, float]:
    """CPU seconds spent between the snapshots, per role (``own_pid``: "this process"; a
    process that started meanwhile counts from zero, one that ended is not counted)."""
    out: dict[str, float] = {}
    for pid, (t, cmd) in after.items():
        role = "this process" if pid == own_pid else _role(cmd)
        spent = t - before.get(pid, (0.0, ""))[0]
        if spent > 0:
            out[role] = out.get(role, 0.0) + spent
    return out
