"""`python -m suite` and the `gan-suite` script. `--help` and `list` are answered without the
evaluation, tracking and study stack (scipy, pandas, MLflow, Optuna; `--help` without torch too),
everything else by `suite.cli`.
"""

import sys

from suite import commands


def main() -> int:
    argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        commands.help_parser().parse_args(argv)  # prints the help (exit 0) or the one-line error
    if argv[0] == "list":
        from suite import catalog  # deferred: the launcher's one job is to load no more than the command needs

        return catalog.main(argv[1:])
    from suite import cli  # deferred: see above

    return cli.entry()


if __name__ == "__main__":  # guarded: spawned helper processes re-import this module
    raise SystemExit(main())
