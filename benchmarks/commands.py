"""The ``deltamem`` subcommands this package adds: ``bench``, ``eval``, ``train-adapter``.

They are registered as entry points of the group ``deltamem.commands`` (pyproject.toml); the
CLI (:mod:`workers.cli`) discovers them with :mod:`importlib.metadata`, so the product never
imports the benchmark suite. Each entry point is a :class:`Command`: a help line, an example,
the arguments it adds and the function that runs it. This module imports nothing heavy: the
benchmark itself is imported only when its command runs.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass

SUITES = ["kernels", "storage", "ingest_paths", "soak", "history_cost", "all"]


@dataclass(frozen=True)
class Command:
    """One subcommand: what ``workers.cli`` needs to add it to the parser and run it."""

    help: str
    example: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", choices=SUITES)
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark")


def _bench(args: argparse.Namespace) -> int:
    module = "bench_all" if args.suite == "all" else args.suite
    mod = importlib.import_module(f"benchmarks.{module}")
    return int(mod.main(list(args.rest)) or 0)


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("rest", nargs=argparse.REMAINDER,
                   help="clinc|elec2|facts|locomo|all [--quick] ..., or lm [--quick] ... "
                        "(δ-mem on SmolLM2)")


def _eval(args: argparse.Namespace) -> int:
    rest = list(args.rest)
    if rest[:1] == ["lm"]:  # δ-mem on the causal LM
        from benchmarks.lm_eval import main as lm_main

        return int(lm_main(rest[1:]) or 0)
    from benchmarks.evaluate import main as eval_main

    return int(eval_main(rest) or 0)


def _rest_arguments(p: argparse.ArgumentParser) -> None:
    # argparse.REMAINDER takes nothing when the first word is a flag (``--out x``): no prefix
    # character here, so every word (``--help`` too) goes to benchmarks.lm_train's own parser
    p.prefix_chars = "\x00"
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for benchmarks.lm_train")


def _train_adapter(args: argparse.Namespace) -> int:
    from benchmarks.lm_train import main as train_main

    return int(train_main(list(args.rest)) or 0)


BENCH = Command("run registered benchmarks", "deltamem bench kernels --help",
                _bench_arguments, _bench)
EVAL = Command("run the evaluation (accuracy, forgetting, adaptation)", "deltamem eval --help",
               _eval_arguments, _eval)
TRAIN_ADAPTER = Command("train the δ-mem adapter of chat agents (backbone frozen)",
                        "deltamem train-adapter --help", _rest_arguments, _train_adapter)
