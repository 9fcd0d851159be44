"""benchmarks/proc_cpu.py: CPU per process role from /proc, on real processes."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
import time

import pytest

from benchmarks import proc_cpu

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")


def test_doctests():
    assert doctest.testmod(proc_cpu).failed == 0


def test_a_busy_child_is_counted_under_its_role_and_an_idle_one_is_not():
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ntime.sleep(30)"
    before = proc_cpu.snapshot()
    kids = [subprocess.Popen([sys.executable, "-c", code, "spawn_main"])  # role: client process
            for code in (busy, "import time; time.sleep(30)")]
    try:
        deadline = time.monotonic() + 30
        while True:  # until the busy one has spun its 0.3 s of CPU (the idle one sleeps)
            after = proc_cpu.snapshot()
            if after[kids[0].pid][0] >= 0.28 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert after[kids[0].pid][0] - before.get(kids[0].pid, (0.0, ""))[0] >= 0.25
        assert after[kids[1].pid][0] < 0.2  # started, imported nothing, asleep
        spent = proc_cpu.by_role(before, after, os.getpid())
        assert spent.get("client process", 0.0) >= 0.25
        mine = proc_cpu.by_role(before, after, kids[0].pid)  # the busy one as "this process"
        assert mine["this process"] >= 0.25
    finally:
        for k in kids:
            k.kill()
            k.wait()


def test_roles_follow_the_command_line():
    assert proc_cpu._role("ray::IngestActor.ingest") == "ingest actor"
    assert proc_cpu._role("/x/ray/core/src/ray/raylet/raylet --flag") == "raylet"
    assert proc_cpu._role("python -c from multiprocessing.spawn import spawn_main") == \
        "client process"
    assert proc_cpu._role("/usr/bin/sleep 1") == "other"
