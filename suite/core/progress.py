"""Progress: a tqdm bar on a terminal or in a Jupyter notebook (a widget where ipywidgets is
installed), plain periodic lines otherwise (logs, CI)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, start: int = 0, desc: str = "", enabled: bool | None = None,
                 interval: float = 10.0):
        self.total, self.step, self.desc, self.interval = total, start, desc, interval
        notebook = in_notebook()
        self.tty = (sys.stderr.isatty() or notebook) if enabled is None else enabled
        self.bar = None
        self.t0 = self.t_last = time.perf_counter()
        self.n0 = start
        self.postfix = ""
        if self.tty:
            from tqdm.auto import tqdm  # only with a bar to draw (auto: the notebook widget in a kernel)

            self.bar = tqdm(total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True, file=sys.stderr)

    def update(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(step - self.step)
        self.step = step

    def show(self, values: dict[str, float], rate: float) -> None:
        """Latest losses and throughput (called at flush points, not every step)."""
        self.postfix = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.postfix} {rate:.1f} img/s", refresh=False)
            return
        now = time.perf_counter()
        if now - self.t_last >= self.interval:
            self.t_last = now
            print(f"{self.desc} step {self.step}/{self.total} {self.postfix} {rate:.1f} img/s",
                  file=sys.stderr, flush=True)

    def close(self, message: str = "") -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if message:
            print(message, file=sys.stderr, flush=True)


def in_notebook() -> bool:
    """Running in a Jupyter kernel (its stderr is no terminal, but a bar is still read by a person)."""
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"
