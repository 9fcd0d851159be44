"""``deltamem demo`` runs to completion on embedded defaults (its own Ray, SQLite, HTTP).

About 40 s on 2 cores, so it runs in CI by default (not marked slow)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_runs_to_completion(tmp_path):
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("DELTAMEM_ADMIN_KEY", None)
    proc = subprocess.run([sys.executable, "-m", "workers.cli", "demo", "--port", "0"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "prequential accuracy" in out and "version history" in out and "stopped" in out
    assert (tmp_path / "deltamem.db").exists()  # the SQLite file in the working directory
    # accuracy improves as events arrive: the last slices beat the first one
    rows = [ln.split() for ln in out.splitlines() if ln.strip() and ln.split()[0].isdigit()
            and len(ln.split()) == 5 and "/" in ln.split()[3]]
    acc = [float(r[4]) for r in rows]
    assert len(acc) >= 5 and acc[0] == 0.0 and max(acc[-3:]) >= 0.6, acc
