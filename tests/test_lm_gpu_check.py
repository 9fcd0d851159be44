"""scripts/gpu_check.sh on a machine without a GPU: a quick, clear "no GPU" JSON report and exit
status 0, at the path given or at $OUT/gpu_report.json; bench kernels refuses the CuPy backend."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from agent.memory.backend import gpu_available

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.sh")


def _has_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    return out.returncode == 0 and out.stdout.startswith("GPU ")


pytestmark = pytest.mark.skipif(_has_gpu(), reason="a GPU is present: the script runs the real checks")


def test_no_gpu_report_at_given_path_and_at_out(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("OUT", None)
    path = tmp_path / "sub" / "report.json"
    done = subprocess.run(["bash", SCRIPT, str(path)], capture_output=True, text=True, env=env,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(path.read_text())
    assert report["gpu"] is False and report["exit_code"] == 0
    assert report["reason"].startswith("no GPU")
    assert report["steps"] == {} and report["total_seconds"] < 30
    assert json.loads(done.stdout.strip().splitlines()[-1])["gpu"] is False
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, timeout=60,
                          env=dict(env, OUT=str(out)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "gpu_report.json").read_text())["gpu"] is False


def test_bench_kernels_refuses_cupy_backend_without_a_gpu(capsys):
    from benchmarks.kernels import main

    if gpu_available():
        pytest.skip("CuPy and a GPU are usable here")
    assert main(["--backend", "cupy", "--quick"]) == 2
    assert "no usable GPU" in capsys.readouterr().err


def test_gpu_extra_is_declared():
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    assert any(spec.startswith("cupy-cuda12x") for spec in extras["gpu"])
