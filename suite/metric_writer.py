"""Helper process of suite.tracking: reads metric batches (JSON lines) from stdin and logs them
to one MLflow run, so the training process never does MLflow's per-value ORM work.

    python -m suite.metric_writer RUN_ID    (started by suite.tracking; the store: MLFLOW_TRACKING_URI / SUITE_HOME)
"""

from __future__ import annotations

import json
import select
import sys

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from suite import paths, signals
from suite.tracking import _quiet

MAX_BATCH = 1000  # MLflow's log_batch limit


def main(run_id: str) -> int:
    signals.ignore_stops()  # Ctrl-C reaches the whole process group: the trainer decides when we end (EOF)
    _quiet()
    client = MlflowClient(tracking_uri=paths.tracking_uri())
    error = None
    pending: list = []

    def write():
        nonlocal error, pending
        while pending and error is None:
            chunk, pending = pending[:MAX_BATCH], pending[MAX_BATCH:]
            try:
                client.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v, ts, step in chunk])
            except Exception as e:  # noqa: BLE001 - reported at the next drain
                error = e
        pending = []

    for line in sys.stdin:
        line = line.strip()
        if line == "drain":
            write()
            print("ok" if error is None else str(error).splitlines()[0][:200] or type(error).__name__, flush=True)
            error = None
        elif line:
            pending.extend(json.loads(line))
            # Write when nothing more is waiting in the pipe: several flushes then share one
            # log_batch (MLflow's per-call cost falls with batch size).
            if len(pending) >= MAX_BATCH or not select.select([sys.stdin], [], [], 0)[0]:
                write()
    write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
