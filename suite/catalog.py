"""The named recipes, from the registries alone (torch comes in through the recipes; the
evaluation, tracking and study stack does not), so that `list` answers quickly.

    python -m suite list [--plugin FILE.py]
"""

from __future__ import annotations

from recipes import registry
from suite import commands, data, plugins
from suite.core.errors import SuiteError

COLUMNS = ("recipe", "family", "dataset", "size", "scale", "summary", "plugin")


def rows() -> list[dict]:
    out = []
    for r in sorted(registry.RECIPES.values(), key=lambda r: (r.cpu_sized, r.family, r.name)):
        cfg, spec = r.config(), data.get_spec(r.dataset)
        out.append({"recipe": r.name, "family": r.family, "dataset": r.dataset,
                    "size": "2D" if spec.kind == "points" else f"{cfg.image_size or spec.native_size}px",
                    "scale": "cpu" if r.cpu_sized else "paper", "summary": r.summary,
                    "plugin": r.origin.get("plugin", "")})
    return out


def lines(table: list[dict]) -> list[str]:
    """Aligned columns, the summary and the plugin (if any) last."""
    aligned = COLUMNS[:5]
    widths = {c: max(len(c), *(len(str(r[c])) for r in table)) for c in aligned}
    out = ["  ".join(c.ljust(widths[c]) for c in aligned)]
    for r in table:
        tail = r["summary"] + (f"  [plugin {r['plugin']}]" if r["plugin"] else "")
        out.append("  ".join(str(r[c]).ljust(widths[c]) for c in aligned) + "  " + tail)
    return out


def parser() -> commands.Parser:
    return commands.Parser(prog="python -m suite list", description=commands.HELP["list"],
                           parents=[commands.groups()["plugin"]])


def main(argv: list[str]) -> int:
    """`python -m suite list ...` as the launcher answers it."""
    args = parser().parse_args(argv)
    try:
        plugins.load_all(args.plugin or [])
    except SuiteError as e:
        return commands.fail(str(e), e.exit_code)
    print("\n".join(lines(rows())))
    return 0
