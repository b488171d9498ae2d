"""The commands, their one-line help and the argument groups they share: what `python -m suite
--help` prints (through the launcher, without importing torch) and what the full parser in
`suite.cli` is built on, so the two never disagree.
"""

from __future__ import annotations

import argparse
import os
import sys

DESCRIPTION = "GAN benchmark suite: faithful recipes, honest metrics."
HELP = {
    "list": "named recipes with family, dataset, size",
    "show": "print the fully resolved config as JSON",
    "run": "train a recipe, logging to MLflow",
    "evaluate": "metrics and checks: a run's checkpoint, sample files or a generator, against a dataset or any "
                "reference set",
    "tune": "an Optuna study of a recipe's learning rates; trials are MLflow runs",
    "benchmark": "every SPEC x seed trained; leaderboard with intervals, paired verdicts",
    "report": "an HTML (or Markdown) report of runs, an experiment or a study",
    "ui": "start the MLflow UI on the suite's tracking store",
    "bench": "speed benchmarks: ratios against baselines timed in the same run",
    "train-classifier": "train (once, cached) a domain classifier for offline metrics",
    "prepare": "decode a file-backed dataset once into a memory-mapped array runs read",
}


def fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + error
        raise SystemExit(fail(f"{self.prog}: {message} (see --help)"))


def top_parser() -> tuple[Parser, argparse._SubParsersAction]:
    p = Parser(prog="python -m suite", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="{" + ",".join(HELP) + "}")
    return p, sub


def help_parser() -> Parser:
    """The top level alone, as `python -m suite --help` shows it: every command with its help line."""
    p, sub = top_parser()
    for name, line in HELP.items():
        sub.add_parser(name, help=line)
    return p


def groups() -> dict[str, argparse.ArgumentParser]:
    """Argument groups several commands share, each defined once (argparse parents)."""
    plugin = argparse.ArgumentParser(add_help=False)
    plugin.add_argument("--plugin", action="append", metavar="FILE.py|MODULE",
                        help="load a plugin's families, recipes, datasets, extractors, metrics (repeatable; also "
                             "SUITE_PLUGINS and installed `gan_suite.plugins` entry points)")
    machine = argparse.ArgumentParser(add_help=False)
    machine.add_argument("--device", default=os.environ.get("SUITE_DEVICE", "cpu"), help="cpu | cuda | cuda:N")
    machine.add_argument("--data-root", help="folder holding local datasets (or set SUITE_DATA_ROOT)")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    config.add_argument("--seed", type=int, help="random seed (default: the recipe's, 0)")
    config.add_argument("--max-steps", type=int, help="stop after N generator iterations")
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("--quiet", action="store_true", help="no summary at the end (stdout is the same either way)")
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--storage", help="Optuna storage URL: sqlite:///f.db, postgresql://..., journal:///f.log "
                                         "(default SUITE_HOME/optuna.db)")
    store.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    return {"plugin": plugin, "machine": machine, "config": config, "quiet": quiet, "store": store}
