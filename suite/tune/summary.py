"""The end of a study: its summary (best trial vs the paper's default), the trials table and
Optuna's plots, logged to the study's MLflow parent run.
"""

from __future__ import annotations

import json
import sys
import warnings

from optuna.trial import TrialState

from suite.core import images
from suite.core.tracking import Tracker
from suite.tune.spec import StudySpec


def finalize(study, spec: StudySpec, parent_id: str) -> dict:
    """Best params and value, trials CSV and Optuna's plots on the parent run."""
    tracker = Tracker.attach(parent_id)
    df = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs", "duration",
                                       "intermediate_values"))
    tracker.log_text(df.to_csv(index=False), "study/trials.csv")
    trials = counted(study)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    summary = {"study": spec.study_name, "metric": spec.metric, "direction": spec.direction,
               "trials": len(trials), "complete": len(done),
               "pruned": sum(t.state == TrialState.PRUNED for t in trials),
               "failed": sum(t.state == TrialState.FAIL for t in trials),
               "requeued": len(study.trials) - len(trials)}
    if done:
        best = study.best_trial
        default = next((t for t in done if t.user_attrs.get("paper_default")), None)
        summary.update({"best_value": best.value, "best_params": best.params, "best_trial": best.number})
        metrics = {"best_value": best.value, "trials_complete": len(done), "trials_pruned": summary["pruned"],
                   "trials_failed": summary["failed"]}
        if default is not None:
            summary["default_value"] = default.value
            metrics["default_value"] = default.value
        tracker.log_metrics(len(study.trials), metrics)
        tracker.set_tags({"suite.best_trial": best.number, "suite.best_value": f"{best.value:.6g}",
                          **{f"best.{k}": f"{v:.6g}" if isinstance(v, float) else v for k, v in best.params.items()},
                          "suite.best_run_id": best.user_attrs.get("mlflow_run_id", "")})
    tracker.log_text(json.dumps(summary, indent=2, default=str), "study/summary.json")
    for name, image in study_plots(study).items():
        tracker.log_image(image, f"study/{name}.png")
    tracker.finish("FINISHED")
    return summary


def counted(study) -> list:
    """One trial per slot, its latest try: a trial stopped by a signal, or whose worker died, was
    queued again as a new Optuna trial and still counts once."""
    latest = {}
    for t in study.get_trials(deepcopy=False):
        key = t.user_attrs.get("slot", f"#{t.number}")
        if key not in latest or t.number > latest[key].number:
            latest[key] = t
    return sorted(latest.values(), key=lambda t: t.number)


def study_plots(study) -> dict:
    """Optuna's optimization history, parallel coordinates and parameter importances."""
    import optuna.visualization.matplotlib as vm  # heavy optional: imports matplotlib

    out = {}
    plots = {"optimization_history": vm.plot_optimization_history, "parallel_coordinate": vm.plot_parallel_coordinate,
             "param_importances": vm.plot_param_importances}
    for name, fn in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = fn(study)
            except (ValueError, RuntimeError, ZeroDivisionError) as e:  # too few finished trials
                print(f"note: {name} plot skipped ({str(e).splitlines()[0][:100]})", file=sys.stderr)
                continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flatten()[0].figure
        fig.set_size_inches(9.5 if name == "parallel_coordinate" else 7, 4.5)  # one axis per parameter
        out[name] = images.render(fig)
    return out
