"""Command line: `python -m suite COMMAND ...`.

    python -m suite list
    python -m suite show dcgan_fashion --set lr_d=1e-4
    python -m suite run dcgan_fashion --max-steps 200 --seed 1
    python -m suite run --resume RUN_ID
    python -m suite run wgangp_fashion --plugin examples/plugins/wgan_gp.py

It parses arguments and prints; the work is done by `suite.api`, which Python callers use too.
Every user-facing error is a SuiteError: one line on stderr, exit 2, no traceback. Choices and
defaults come from the registries (recipes, datasets, extractors, checkpoints, formats, samplers,
pruners, tests), after the plugins named by --plugin have registered theirs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from evaluation import classifier, features, samples, seeds
from evaluation.defaults import DEFAULTS
from recipes import registry
from reports import benchmark as bench_report
from reports import build
from suite import api, benchmark, catalog, commands, data, launch, run_setup, summary, ui
from suite.core import jsonout, memory, ranks, signals, tracking
from suite.core.errors import CellsMissing, ConfigError, RankLost, Stopped, SuiteError, disk_full, out_of_memory
from suite.evaluate_run import evaluate_run
from suite.tune import spec as tune_spec
from suite.tune import study as tune


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
    print("\n".join(catalog.lines(catalog.rows())))
    return 0


def cmd_show(args) -> int:
    print(json.dumps(api.show(args.recipe, args.seed, args.max_steps, **parse_sets(args.set)), indent=2))
    return 0


def cmd_run(args) -> int:
    if args.nproc < 1:
        raise ConfigError(f"invalid --nproc {args.nproc}: at least 1")
    if args.nproc > 1 and not ranks.launched():  # the suite starts torchrun's agent; this process waits
        if args.recipe:  # a batch that does not split is said here, before any process or run exists
            cfg = run_setup.resolve_config(args.recipe, parse_sets(args.set), args.seed, args.max_steps)
            run_setup.check_split(cfg, args.nproc)
        return launch.run_processes(args.nproc, _without_nproc(args.argv))
    if ranks.launched():
        ranks.join(args.device)
    try:
        result = api.run(args.recipe, resume=args.resume, seed=args.seed, device=args.device, max_steps=args.max_steps,
                         data_root=args.data_root, download=args.download, evaluate=not args.no_eval,
                         allow_changed_plugin=args.allow_changed_plugin, **parse_sets(args.set))
    except (Stopped, SuiteError) as e:
        ranks.leave(wait=isinstance(e, Stopped))  # a stop: every rank here after the same step, rank 0 last to write
        raise
    except Exception as e:
        if ranks.current() is not None and ranks.lost(e):  # outside the run's loop (setting up, rank 0 gone)
            ranks.leave(wait=False)
            raise RankLost(f"a process of this run is gone: {str(e).splitlines()[0][:200]}") from None
        raise
    ranks.leave(wait=True)
    if ranks.follower():
        return 0
    if not args.quiet:
        print("\n".join(summary.run_summary(result.run_id)), file=sys.stderr, flush=True)
    print(result.run_id)
    return 0


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def cmd_evaluate(args) -> int:
    given = [name for name, v in (("RUN_ID", args.run_id), ("--samples", args.samples), ("--generator", args.generator))
             if v]
    if len(given) != 1:
        raise ConfigError("evaluate needs one of RUN_ID, --samples FILE or --generator FILE.py:callable"
                          + (f" (got {' and '.join(given)})" if given else ""))
    if args.n is not None and args.n < 1:
        raise ConfigError(f"--n must be a positive number of samples, got {args.n}")
    if args.run_id:
        out = evaluate_run(args.run_id, args.checkpoint, args.n, args.device)
        print(dump_json(out, indent=None if args.json else 2))
        return 0
    if not args.dataset and not args.reference:
        raise ConfigError(f"{given[0]} needs the reference: --dataset NAME or --reference FOLDER|FILE")
    generated = args.samples
    if args.generator:
        if not args.n:
            raise ConfigError("--generator needs --n N (how many samples to draw)")
        generated = api.sample_generator(args.generator, args.weights, args.n, args.latent_dim, args.device)
    result = api.evaluation_result(generated, args.reference, dataset=args.dataset, n=args.n, extractor=args.extractor,
                                   device=args.device, data_root=args.data_root, reference_name=args.reference_name,
                                   inception_weights=args.inception_weights, value_range=args.range)
    if args.json:
        print(dump_json(result.to_json()))
    else:
        _print_result(result)
    return 0


def dump_json(obj, indent: int | None = None) -> str:
    return jsonout.dumps(obj, indent)


def _print_result(result) -> None:
    width = max(len(k) for k in result.metrics)
    for k, v in result.metrics.items():
        if "/" not in k:
            print(f"{k.ljust(width)}  {v:.6g}")
    for name, check in result.checks.items():
        verdict = "FLAGGED" if check.get("flagged") else "ok"
        extra = f" ({check['modes_covered']}/{check['modes_total']} modes)" if check.get("modes_total") else ""
        print(f"{name}: {verdict}{extra}")


def cmd_prepare(args) -> int:
    out = api.prepare(args.dataset, args.size, args.data_root, args.download, args.workers, progress=not args.quiet)
    print(json.dumps(out))
    return 0


def cmd_train_classifier(args) -> int:
    print(json.dumps(api.train_classifier(args.dataset)))
    return 0


def cmd_tune(args) -> int:
    result = api.tune(args.recipe, trials=args.trials, params=args.params, max_steps=args.max_steps,
                      overrides=parse_sets(args.set), timeout=args.timeout, metric=args.metric,
                      direction=args.direction, storage=args.storage, study_name=args.study_name,
                      workers=args.workers, pruner=args.pruner, sampler=args.sampler, seed=args.seed or 0,
                      device=args.device, data_root=args.data_root)
    if not args.quiet:
        print("\n".join(summary.study_summary(result)), file=sys.stderr, flush=True)
    print(dump_json(result))
    return 0


def cmd_tune_worker(args) -> int:
    return tune.worker_main(args.worker_id, args.deadline)


def cmd_benchmark(args) -> int:
    if args.until_decided and args.seeds is not None:
        raise ConfigError("--seeds fixes the seeds in advance; with --until-decided give --max-seeds (the most any "
                          "spec may train)")
    out = api.benchmark(args.specs, seeds=args.seeds or benchmark.BenchmarkSpec.seeds, trials=args.trials,
                        max_steps=args.max_steps, sets=parse_sets(args.set), metrics=args.metric or [],
                        baseline=args.baseline, test=args.test, name=args.name, storage=args.storage,
                        workers=args.workers, device=args.device, data_root=args.data_root,
                        until_decided=args.until_decided, max_seeds=args.max_seeds, min_seeds=args.min_seeds,
                        batch=args.batch, margins=parse_margins(args.margin)).raw
    print(jsonout.dumps(out) if args.json else bench_report.as_text(out))
    if out["missing"]:  # the board above covers the rest; the same command trains only these again
        first = next(iter(out["failures"].items()), None)
        raise CellsMissing(f"benchmark {out['benchmark']}: {len(out['missing'])} cell(s) have no result "
                            f"({', '.join(out['missing'][:3])}{', ...' if len(out['missing']) > 3 else ''})"
                            + (f"; {first[0]}: {first[1]}" if first else "")
                            + "; the same command trains them again")
    return 0


def parse_margins(items: list[str] | None) -> dict[str, float]:
    """--margin 5 (the primary metric) or --margin kid=0.01 -> {'': 5.0, 'kid': 0.01}."""
    out = {}
    for item in items or []:
        key, _, value = item.rpartition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--margin expects M or METRIC=M (a number in the metric's unit), got '{item}'") from None
    return out


def cmd_bench_worker(args) -> int:
    return benchmark.worker_main(args.worker_id)


def cmd_report(args) -> int:
    build.main(args.run_ids, args.experiment, args.study, args.output, args.format, bench=args.benchmark)
    return 0


def cmd_ui(args) -> int:
    return ui.serve(args.host, args.port)


def cmd_bench(args) -> int:
    """pytest-benchmark over tests/benchmarks; the session ends with the table of ratios and
    saves its JSON under .benchmarks/ (compare two commits with --compare)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "tests" / "benchmarks").is_dir():
        raise ConfigError(f"no tests/benchmarks under {root}: benchmarks run from a source checkout of the suite")
    cmd = [sys.executable, "-m", "pytest", "tests/benchmarks", "-o", "python_files=bench_*.py", "--benchmark-only",
           "--benchmark-autosave", "--benchmark-columns=min,median,rounds", "-p", "no:cacheprovider",
           "-n", "0"]  # one process (over addopts' -n auto): a ratio is timed against its baseline on a quiet machine
    if args.k:
        cmd += ["-k", args.k]
    if args.compare is not None:
        cmd.append("--benchmark-compare" + (f"={args.compare}" if args.compare else ""))
    # Not an xdist worker's child (pytest-benchmark disables itself there): from a test or any xdist session.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
    code = subprocess.call(cmd, cwd=root, env=env, **signals.child_options())
    print(f"ratios: {root / '.benchmarks' / 'ratios.json'}; pytest-benchmark JSON: {root / '.benchmarks'}")
    return code


# --------------------------------------------------------------------------- parser


def build_parser() -> commands.Parser:
    """Choices come from the registries as they stand (plugins loaded first: see `main`)."""
    g = commands.groups()
    p, sub = commands.top_parser()
    recipe_help = f"one of the {len(registry.RECIPES)} named recipes (python -m suite list)"
    for add in (_add_list, _add_show, _add_run, _add_evaluate, _add_tune, _add_benchmark, _add_report, _add_ui, _add_bench,
                _add_train_classifier, _add_prepare, _add_workers):
        add(sub, g, recipe_help)
    return p


def _add_list(sub, g: dict, recipe_help: str) -> None:
    s = sub.add_parser("list", help=commands.HELP["list"], parents=[g["plugin"]])
    s.set_defaults(func=cmd_list)


def _add_show(sub, g: dict, recipe_help: str) -> None:
    s = sub.add_parser("show", help=commands.HELP["show"], parents=[g["plugin"], g["config"]])
    s.add_argument("recipe", type=_recipe, metavar="RECIPE", help=recipe_help)
    s.set_defaults(func=cmd_show)


def _add_run(sub, g: dict, recipe_help: str) -> None:
    s = sub.add_parser("run", help=commands.HELP["run"],
                       parents=[g["plugin"], g["config"], g["machine"], g["quiet"]])
    s.add_argument("recipe", nargs="?", type=_recipe, metavar="RECIPE", help=recipe_help)
    s.add_argument("--download", action="store_true", help="download the dataset if missing (needs a network)")
    s.add_argument("--resume", metavar="RUN_ID", help="continue this run from its last checkpoint")
    s.add_argument("--allow-changed-plugin", action="store_true",
                   help="resume although the family's plugin source changed since the run started")
    s.add_argument("--no-eval", action="store_true", help="skip metric evaluation during and after training")
    s.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="N processes train the run through torchrun (torch.distributed: nccl on cuda, gloo on cpu); "
                        "batch_size stays the global batch")
    s.set_defaults(func=cmd_run)


def _add_evaluate(sub, g: dict, recipe_help: str) -> None:
    s = sub.add_parser("evaluate", help=commands.HELP["evaluate"], parents=[g["plugin"], g["machine"]])
    s.add_argument("run_id", nargs="?", help="an MLflow run of the suite (results are logged to it)")
    s.add_argument("--checkpoint", default="best", choices=["best", "last"], help="of RUN_ID (default best)")
    s.add_argument("--n", type=int, help=f"samples (default {DEFAULTS['n']} for a run; all of --samples)")
    s.add_argument("--samples", help="generated samples: .npy / .pt (NxHxW, NxCxHxW) or a folder of images")
    s.add_argument("--generator", metavar="FILE.py:CALLABLE", help="a function returning your generator (an "
                   "nn.Module from latents to images in [-1, 1]); with --weights, --n and --latent-dim")
    s.add_argument("--weights", help="the generator's state dict (loaded with weights_only=True)")
    s.add_argument("--latent-dim", type=int, help="latent size of --generator (default: its `latent_dim`)")
    s.add_argument("--dataset", choices=sorted(data.DATASETS), metavar="DATASET",
                   help=f"the reference: a registered dataset ({', '.join(sorted(data.DATASETS))})")
    s.add_argument("--reference", metavar="FOLDER|FILE", help="the reference: any set of real images")
    s.add_argument("--reference-name", help="name of --reference in metric names (default ref-<content hash>)")
    s.add_argument("--range", choices=list(samples.RANGES), help="value range of float arrays (uint8 is 0-255; "
                   "folders of images are read by their modes)")
    s.add_argument("--extractor", choices=sorted(features.EXTRACTORS), help="feature extractor (default: by dataset)")
    s.add_argument("--inception-weights", help="local FID Inception weights file (or SUITE_INCEPTION_WEIGHTS)")
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    s.set_defaults(func=cmd_evaluate)


def _add_tune(sub, g: dict, recipe_help: str) -> None:
    s = sub.add_parser("tune", help=commands.HELP["tune"],
                       parents=[g["plugin"], g["config"], g["machine"], g["store"], g["quiet"]])
    s.add_argument("recipe", type=_recipe, metavar="RECIPE", help=recipe_help)
    trials = tune_spec.StudySpec.trials
    s.add_argument("--trials", type=int, default=trials, help=f"trial slots in the study (default {trials})")
    s.add_argument("--timeout", type=float, help="stop claiming new trials after S seconds")
    s.add_argument("--params", help="lr_g,lr_d (default) or name:low:high[:log|:lin],...")
    s.add_argument("--metric", help="objective (default: the recipe's primary evaluation metric)")
    s.add_argument("--direction", choices=["minimize", "maximize"], help="default: inferred from the metric")
    s.add_argument("--study-name", help="default RECIPE-tune; an existing study is resumed/joined")
    s.add_argument("--pruner", default=tune_spec.StudySpec.pruner, choices=list(tune_spec.PRUNERS))
    s.add_argument("--sampler", default=tune_spec.StudySpec.sampler, choices=list(tune_spec.SAMPLERS))
    s.set_defaults(func=cmd_tune)


def _add_benchmark(sub, g: dict, recipe_help: str) -> None:
    s = sub.add_parser("benchmark", help=commands.HELP["benchmark"],
                       parents=[g["plugin"], g["machine"], g["store"]])
    s.add_argument("specs", nargs="+", metavar="SPEC", help="RECIPE or RECIPE:key=value,key=value (its text is its label)")
    s.add_argument("--seeds", type=int, help=f"seeds 0..N-1 per spec (default {benchmark.BenchmarkSpec.seeds})")
    s.add_argument("--until-decided", action="store_true", help="seeds in rounds; each pair stops once decided, "
                   "with the family-wise error held at 5 %% across the looks (evaluation/sequential.py)")
    s.add_argument("--max-seeds", type=int, metavar="K", help="with --until-decided: the most seeds a spec trains")
    s.add_argument("--min-seeds", type=int, default=benchmark.BenchmarkSpec.min_seeds, metavar="N0",
                   help="with --until-decided: seeds of the first round (default %(default)s)")
    s.add_argument("--batch", type=int, default=benchmark.BenchmarkSpec.batch,
                   help="with --until-decided: seeds added per round (default %(default)s)")
    s.add_argument("--margin", action="append", metavar="M|METRIC=M", help="declare a pair 'equivalent within M' "
                   "when its interval lies inside (-M, M): two one-sided tests (M in the metric's unit; bare M: "
                   "the primary metric; repeatable)")
    s.add_argument("--trials", type=int, help="instead of --seeds: K random-search trials per spec (trial t: seed t, "
                   "lr_g and lr_d drawn log-uniform for t, the same for every spec) and budget curves")
    s.add_argument("--max-steps", type=int, help="training steps of every cell")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override applied to every spec (repeatable)")
    s.add_argument("--metric", action="append", help="compare this metric too (a logged name or a key: kid, recall)")
    s.add_argument("--baseline", metavar="SPEC", help="compare every spec with this one only (fewer pairs)")
    s.add_argument("--test", default="t", choices=list(seeds.TESTS), help="paired test (default t)")
    s.add_argument("--name", help="default: the specs and seed count; an existing benchmark is resumed/joined")
    s.add_argument("--json", action="store_true", help="print the leaderboard and comparisons as one JSON object")
    s.set_defaults(func=cmd_benchmark)


def _add_report(sub, g: dict, recipe_help: str) -> None:
    s = sub.add_parser("report", help=commands.HELP["report"],
                       parents=[g["plugin"]])
    s.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    s.add_argument("--experiment", help="every run of this MLflow experiment (a recipe name)")
    s.add_argument("--study", help="an Optuna study run by `suite tune`")
    s.add_argument("--benchmark", help="a benchmark run by `suite benchmark` (its --name)")
    s.add_argument("-o", "--output", help="output file (default report.html / report.md)")
    s.add_argument("--format", default="html", choices=list(build.FORMATS),
                   help="html (self-contained) | md (images in a folder beside it)")
    s.set_defaults(func=cmd_report)


def _add_ui(sub, g: dict, recipe_help: str) -> None:
    s = sub.add_parser("ui", help=commands.HELP["ui"])
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=5000)
    s.set_defaults(func=cmd_ui)


def _add_bench(sub, g: dict, recipe_help: str) -> None:
    s = sub.add_parser("bench", help=commands.HELP["bench"])
    s.add_argument("-k", help="only the benchmarks matching this pytest -k expression")
    s.add_argument("--compare", nargs="?", const="", metavar="RUN",
                   help="compare with a saved benchmark run (default: the latest)")
    s.set_defaults(func=cmd_bench)


def _add_prepare(sub, g: dict, recipe_help: str) -> None:
    s = sub.add_parser("prepare", help=commands.HELP["prepare"], parents=[g["plugin"], g["machine"], g["quiet"]])
    s.add_argument("dataset", choices=sorted(data.DATASETS), metavar="DATASET")
    s.add_argument("--size", type=int, default=0, help="image size runs will ask for (default: the native size)")
    s.add_argument("--download", action="store_true", help="download the dataset if missing (needs a network)")
    s.add_argument("--workers", type=int, default=-1, help="decoding processes (default: the cores this process may use)")
    s.set_defaults(func=cmd_prepare)


def _add_train_classifier(sub, g: dict, recipe_help: str) -> None:
    s = sub.add_parser("train-classifier", help=commands.HELP["train-classifier"])
    s.add_argument("dataset", choices=list(classifier.SUPPORTED))
    s.set_defaults(func=cmd_train_classifier)


def _add_workers(sub, g: dict, recipe_help: str) -> None:
    """Internal: worker processes of `tune / benchmark --workers K` (spec and plugins in their environment)."""
    s = sub.add_parser("_tune-worker")
    s.add_argument("worker_id")
    s.add_argument("deadline", nargs="?", default="")
    s.set_defaults(func=cmd_tune_worker)
    s = sub.add_parser("_bench-worker")
    s.add_argument("worker_id")
    s.set_defaults(func=cmd_bench_worker)


def _recipe(name: str) -> str:
    """A registered recipe's name (the registry's own line, with near matches, when it is not)."""
    try:
        return registry.get(name).name
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _plugin_args(argv: list[str]) -> list[str]:
    """The --plugin values, read before the parser is built (its choices include what they register)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--plugin", action="append")
    return pre.parse_known_args(argv)[0].plugin or []


def entry() -> int:
    """`python -m suite` and the `gan-suite` script: the suite owns this process (signals.owned)."""
    memory.keep_freed_memory()
    with signals.owned():
        try:
            return main()
        except BrokenPipeError:  # `suite show X | head`: the reader left; no traceback, and none at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141


def main(argv: list[str] | None = None) -> int:
    """The CLI; called in another program's process it leaves that process's signals as it found them."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        api.load_plugins(_plugin_args(argv))
    except SuiteError as e:
        return commands.fail(str(e), e.exit_code)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except SuiteError as e:
        if ranks.follower():  # several processes: rank 0 says it (the others met the same error or its echo)
            return e.exit_code
        return commands.fail(str(e), e.exit_code)
    except OSError as e:
        if disk_full(e):
            return commands.fail(f"the disk is full: {e.strerror or e} ({e.filename or 'writing'}); free space and run it again")
        raise
    except (MemoryError, RuntimeError) as e:
        if (why := out_of_memory(e)) is not None:
            return commands.fail(f"out of memory: {why}; lower image_size, n_sample, batch_size or eval_n")
        if (line := tracking.store_error(e)) is not None:
            return commands.fail(line)
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt store found mid-command: one line, not SQLAlchemy's page
        if (line := tracking.store_error(e)) is not None:
            return commands.fail(line)
        raise
    except KeyboardInterrupt:
        return commands.fail("interrupted", 130)
