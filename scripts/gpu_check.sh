#!/usr/bin/env bash
# deltamem GPU check: one short call (under 8 minutes) on a machine with an NVIDIA GPU.
#
#   scripts/gpu_check.sh [REPORT.json]     default: $OUT/gpu_report.json, else ./gpu_report.json
#
# Steps, each under `timeout`, all inside GPU_CHECK_BUDGET_S (default 470 s):
#   1. probe     nvidia-smi: device, driver, CUDA version (none: "gpu": false report, exit 0)
#   2. install   the `gpu` extra of pyproject.toml (CuPy) when `import cupy` fails; DELTAMEM_CUPY
#                overrides the pip spec (e.g. "cupy-cuda13x>=13" for a CUDA 13 toolkit), and
#                DELTAMEM_WHEELS=DIR installs offline from a folder of wheels
#   3. tests     the `gpu`-marked tests (CuPy kernels against NumPy, δ-mem on CUDA against CPU)
#   4. bench     deltamem bench kernels --quick --json --backend cupy (CuPy vs a cuBLAS GEMM)
#   5. train     a short adapter training on CUDA (SmolLM2 when its wheel is installed, else the
#                tiny test model); needs a CUDA build of torch
# Exit status: 0 every step passed, or no GPU on this machine (report "gpu": false);
#              1 a step failed or timed out; 3 a GPU is present but a step could not run
#              (CuPy or CUDA torch missing). The JSON report is written in every case.
# Env: PYTHON (default .venv/bin/python, else python3), GPU_CHECK_BUDGET_S.
set -u
cd "$(dirname "$0")/.." || exit 1
REPORT=${1:-}
if [ -z "$REPORT" ]; then
  if [ -n "${OUT:-}" ]; then REPORT="$OUT/gpu_report.json"; else REPORT="gpu_report.json"; fi
fi
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
START=$(date +%s)
DEADLINE=$((START + ${GPU_CHECK_BUDGET_S:-470}))
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 \
  TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_USAGE_STATS_ENABLED=0
: >"$WORK/steps.tsv"

record() {  # name status rc seconds note
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-}" >>"$WORK/steps.tsv"
}

run_step() {  # name limit_s command...: runs it under timeout, logs to $WORK/name.log
  local name=$1 limit=$2
  shift 2
  local left=$((DEADLINE - $(date +%s)))
  if [ "$left" -le 15 ]; then
    record "$name" skipped "" 0 "no time left in the budget"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.log" 2>&1
  local rc=$? status=passed
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status=timeout; elif [ $rc -ne 0 ]; then status=failed; fi
  record "$name" "$status" "$rc" $(($(date +%s) - t0)) "limit ${limit}s"
}

write_report() {  # gpu(true|false) reason exit_code
  "$PY" - "$REPORT" "$WORK" "$1" "$2" "$3" "$START" <<'PYEOF'
import json, os, re, sys, time
path, work, gpu, reason, code, start = sys.argv[1:7]

def read(name):
    p = os.path.join(work, name)
    return open(p, encoding="utf-8", errors="replace").read() if os.path.exists(p) else ""

report = {"gpu": gpu == "true", "reason": reason or None, "exit_code": int(code),
          "python": sys.executable, "steps": {}}
smi = read("smi.txt")
if smi:
    report["nvidia_smi"] = smi.strip().splitlines()[:4]
    m = re.search(r"CUDA Version:\s*([\d.]+)", read("smi_full.txt"))
    report["driver_cuda"] = m.group(1) if m else None
for line in read("steps.tsv").splitlines():
    name, status, rc, secs, note = (line.split("\t") + [""] * 5)[:5]
    tail = read(name + ".log").strip().splitlines()[-25:]
    report["steps"][name] = {"status": status, "rc": int(rc) if rc else None,
                             "seconds": int(secs), "note": note, "log_tail": tail}
for line in read("versions.txt").splitlines():
    k, _, v = line.partition("=")
    report.setdefault("versions", {})[k] = v
tests = re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", read("tests.log"))
if tests:
    report["tests"] = {k: int(n) for n, k in tests}
bench = [ln for ln in read("bench.log").splitlines() if ln.startswith("{")]
if bench:
    b = json.loads(bench[-1])
    report["bench"] = {k: v for k, v in b.items() if k != "rows"}
    report["bench"]["rows"] = [{k: r[k] for k in ("rule", "d_k", "d_v", "chunk", "events_per_s",
                                                  "gemm_ratio", "max_rel_err")} for r in b["rows"]]
card = read("adapter.json")
if card:
    c = json.loads(card)
    report["train"] = {k: c.get(k) for k in ("backbone", "device", "steps", "batch", "regime",
                                             "train_seconds", "before", "after", "stopped")}
    report["train"]["stop_rule"] = {k: c["stop_rule"][k] for k in ("rule", "reached_at_step")}
    steps = re.findall(r"\(([\d.]+)s/step\)", read("train.log"))
    report["train"]["s_per_step_last"] = float(steps[-1]) if steps else None
report["total_seconds"] = round(time.time() - int(start), 1)
os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
with open(path, "w", encoding="utf-8") as f:
    json.dump(report, f, indent=2)
print(json.dumps({k: report[k] for k in ("gpu", "reason", "exit_code", "total_seconds")}))
PYEOF
}

# 1. probe: no NVIDIA GPU here → a clear report, exit 0
if ! command -v nvidia-smi >/dev/null 2>&1; then
  write_report false "no GPU: nvidia-smi not found" 0
  exit 0
fi
if ! timeout 20 nvidia-smi -L >"$WORK/smi.txt" 2>&1 || ! grep -q "^GPU " "$WORK/smi.txt"; then
  write_report false "no GPU: nvidia-smi lists no device ($(head -c 200 "$WORK/smi.txt" | tr '\n' ' '))" 0
  exit 0
fi
timeout 20 nvidia-smi >"$WORK/smi_full.txt" 2>&1

# 2. install CuPy when missing
if ! "$PY" -c "import cupy" >/dev/null 2>&1; then
  SPEC=${DELTAMEM_CUPY:-$("$PY" -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['gpu']))" 2>/dev/null)}
  SPEC=${SPEC:-cupy-cuda12x>=13}
  # shellcheck disable=SC2086  # SPEC is a list of pip requirement specs
  run_step install 150 "$PY" -m pip install --quiet ${DELTAMEM_WHEELS:+--no-index --find-links "$DELTAMEM_WHEELS"} $SPEC
else
  record install passed 0 0 "cupy already installed"
fi
"$PY" - >"$WORK/versions.txt" 2>/dev/null <<'PYEOF'
import torch
print(f"torch={torch.__version__}")
print(f"torch_cuda={torch.cuda.is_available()}")
try:
    import cupy
    print(f"cupy={cupy.__version__}")
    from agent.memory.backend import gpu_available
    print(f"cupy_gpu_usable={gpu_available()}")
except Exception as e:
    print(f"cupy=not importable: {type(e).__name__}: {e}".replace("\n", " "))
PYEOF
CUPY_OK=0
grep -q "^cupy_gpu_usable=True" "$WORK/versions.txt" && CUPY_OK=1
TORCH_CUDA=0
grep -q "^torch_cuda=True" "$WORK/versions.txt" && TORCH_CUDA=1

# 3. the gpu-marked tests, 4. the kernel benchmark on CuPy
if [ $CUPY_OK -eq 1 ]; then
  mapfile -t GPU_TESTS < <(grep -l "mark.gpu" tests/test_*.py)
  run_step tests 150 "$PY" -m pytest -q -m gpu -p no:cacheprovider "${GPU_TESTS[@]}"
  run_step bench 110 "$PY" -m benchmarks.kernels --quick --json --backend cupy
else
  record tests skipped "" 0 "CuPy does not import or finds no usable GPU (see versions)"
  record bench skipped "" 0 "CuPy does not import or finds no usable GPU (see versions)"
fi

# 5. a short adapter training on CUDA
if [ $TORCH_CUDA -eq 1 ]; then
  MODEL=tiny
  "$PY" -c "from agent.lm.backbone import smollm2_folder as f; raise SystemExit(f() is None)" 2>/dev/null && MODEL=smollm2
  run_step train 170 "$PY" -m benchmarks.lm_train --out "$WORK/adapter.safetensors" --model "$MODEL" \
    --device cuda --synthetic 64 --heldout 32 --gap-n 32 --recall-eval 4 --steps 40 --batch 8 \
    --warmup 5 --eval-every 20 --log-every 5 --no-early-stop --max-minutes 2.5
else
  record train skipped "" 0 "torch in $PY has no CUDA (e.g. the CPU build torch==2.13.0+cpu); install a CUDA build of torch 2.13.0"
fi

CODE=0
cut -f2 "$WORK/steps.tsv" | grep -q skipped && CODE=3
cut -f2 "$WORK/steps.tsv" | grep -qE "failed|timeout" && CODE=1
if [ $CUPY_OK -eq 1 ] && ! grep -qE "[0-9]+ passed" "$WORK/tests.log" 2>/dev/null; then
  CODE=1  # the gpu tests all skipped or none ran: not a pass
fi
write_report true "" $CODE
exit $CODE
