"""Command line: `python -m suite COMMAND ...`.

    python -m suite list
    python -m suite show dcgan_fashion --set lr_d=1e-4
    python -m suite run dcgan_fashion --max-steps 200 --seed 1
    python -m suite run --resume RUN_ID

Every user-facing error is a SuiteError: one line on stderr, exit 2, no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from suite.errors import ConfigError, SuiteError


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + error
        raise SystemExit(_fail(f"{self.prog}: {message} (see --help)"))


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def parse_sets(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got '{item}'")
        out[key.strip()] = value
    return out


# --------------------------------------------------------------------------- commands


def cmd_list(args) -> int:
    from recipes import registry
    from suite import data

    rows = []
    for r in registry.RECIPES.values():
        cfg = r.config()
        spec = data.get_spec(r.dataset)
        size = "2D" if spec.kind == "points" else f"{cfg.image_size or spec.native_size}px"
        rows.append((r.name, r.family, r.dataset, size, "cpu" if r.cpu_sized else "paper", r.summary))
    header = ("recipe", "family", "dataset", "size", "scale", "")
    widths = [max(len(str(x[i])) for x in rows + [header]) for i in range(5)]
    for row in [header] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row[:5], widths)) + "  " + row[5])
    return 0


def cmd_show(args) -> int:
    from suite import harness

    cfg = harness.resolve_config(args.recipe, parse_sets(args.set), args.seed, args.max_steps)
    from recipes import registry

    print(json.dumps({"recipe": args.recipe, "family": registry.get(args.recipe).family,
                      "config": __import__("dataclasses").asdict(cfg)}, indent=2))
    return 0


def cmd_run(args) -> int:
    from suite import harness

    if not args.recipe and not args.resume:
        raise ConfigError("run needs a RECIPE (see `python -m suite list`) or --resume RUN_ID")
    if args.recipe and args.resume:
        raise ConfigError("give either a RECIPE or --resume RUN_ID, not both")
    req = harness.RunRequest(
        recipe=args.recipe, overrides=parse_sets(args.set), seed=args.seed, device=args.device,
        max_steps=args.max_steps, data_root=args.data_root, download=args.download, resume=args.resume,
        evaluate=not args.no_eval)
    run_id = harness.train(req, evaluator_factory=_evaluator_factory())
    print(run_id)
    return 0


def _evaluator_factory():
    try:
        from evaluation.evaluate import training_evaluator
    except ImportError:
        return None
    return training_evaluator


# --------------------------------------------------------------------------- parser


def build_parser() -> Parser:
    p = Parser(prog="python -m suite", description="GAN benchmark suite: faithful recipes, honest metrics.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    s = sub.add_parser("list", help="named recipes with family, dataset, size")
    s.set_defaults(func=cmd_list)

    def config_args(s):
        s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
        s.add_argument("--seed", type=int, help="random seed (default: the recipe's, 0)")
        s.add_argument("--max-steps", type=int, help="stop after N generator iterations")

    s = sub.add_parser("show", help="print the fully resolved config as JSON")
    s.add_argument("recipe")
    config_args(s)
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("run", help="train a recipe, logging to MLflow")
    s.add_argument("recipe", nargs="?")
    config_args(s)
    s.add_argument("--device", default=os.environ.get("SUITE_DEVICE", "cpu"), help="cpu | cuda | cuda:N")
    s.add_argument("--data-root", help="folder holding local datasets (or set SUITE_DATA_ROOT)")
    s.add_argument("--download", action="store_true", help="download the dataset if missing (needs a network)")
    s.add_argument("--resume", metavar="RUN_ID", help="continue this run from its last checkpoint")
    s.add_argument("--no-eval", action="store_true", help="skip metric evaluation during and after training")
    s.set_defaults(func=cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SuiteError as e:
        return _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
