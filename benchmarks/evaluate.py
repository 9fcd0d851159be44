"""``deltamem eval clinc|elec2|facts|locomo|all [--quick] [--out reports/eval]``.

Streams the data sets of ``../shared/data`` through the in-process learner
(:class:`agent.model.MemoryAgent`, the same code the service's learner runs) and the baselines,
and writes ``<out>/<task>.md`` (a markdown table per task), ``<out>/README.md`` (all of them) and
PNG plots of accuracy over the stream. ``--quick`` subsamples (about 1-3 minutes on one core).

With ``--service URL --key KEY`` a CLINC150 subsample goes through the running service instead
(:mod:`benchmarks.eval_service`), beside the in-process learner, and the report says whether they
agree.

Examples
--------
>>> parse_args(["clinc", "--quick"]).tasks
['clinc']
>>> parse_args(["all"]).tasks
['clinc', 'elec2', 'facts', 'locomo']
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

TASKS = ("clinc", "elec2", "facts", "locomo")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="deltamem eval", description=__doc__.split("\n\n")[0])
    p.add_argument("task", choices=TASKS + ("all",))
    p.add_argument("--quick", action="store_true", help="subsample for a run of 1-3 minutes")
    p.add_argument("--out", default="reports/eval", help="report folder (default reports/eval)")
    p.add_argument("--batch", type=int, default=100, help="CLINC micro-batch size (default 100)")
    p.add_argument("--big", action="store_true", help="CLINC: add the 4096-d rls learner (slow)")
    p.add_argument("--service", default=None, help="stream through a running service (URL)")
    p.add_argument("--key", default=None, help="API key for --service")
    a = p.parse_args(argv)
    a.tasks = list(TASKS) if a.task == "all" else [a.task]
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    from benchmarks.eval_common import data_dir, have_data

    if args.service and not args.key:
        print("deltamem eval: --service needs --key (a tenant API key)", file=sys.stderr)
        return 2
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from agent.memory.backend import set_blas_threads

    set_blas_threads(1)  # as in every actor; idle BLAS threads spinning would count as CPU time
    try:
        import torch

        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    except ImportError:  # pragma: no cover
        pass
    from benchmarks import eval_clinc, eval_elec2, eval_facts, eval_locomo

    mods = {"clinc": eval_clinc, "elec2": eval_elec2, "facts": eval_facts, "locomo": eval_locomo}
    if args.service:
        from benchmarks import eval_service

        mods = {"clinc": eval_service}
        args.tasks = ["clinc"]  # the agreement check streams CLINC150 through both
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    for task in args.tasks:
        mod = mods[task]
        files = getattr(mod, "FILES", ())
        if files and not have_data(*files):
            print(f"deltamem eval: {task}: data not found in {data_dir()} (set DELTAMEM_DATA_DIR)",
                  file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        print(f"== {task}{' (quick)' if args.quick else ''}", flush=True)
        kw: dict = {"batch": args.batch, "big": args.big} if task == "clinc" else {}
        if args.service:
            kw = {"batch": args.batch, "url": args.service, "key": args.key}
        res = mod.run(out, quick=args.quick, **kw)
        secs = time.perf_counter() - t0
        text = f"## {task}{' (quick)' if args.quick else ''}\n\n{res['markdown']}\n"
        text += "".join(f"\n![{p.stem}]({p.name})\n" for p in res["plots"])
        text += f"\n({secs:.0f} s)\n"
        (out / f"{task}.md").write_text(text)
        sections.append(text)
        print(res["markdown"], flush=True)
    cmd = "deltamem eval " + " ".join(argv if argv is not None else sys.argv[1:])
    (out / "README.md").write_text(f"# deltamem evaluation\n\n`{cmd}`\n\n" + "\n".join(sections))
    print(f"report: {out / 'README.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
