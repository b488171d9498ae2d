"""Sample-quality metrics, mode-collapse and memorization checks.

Importing the package registers the built-in metrics (evaluation/measures.py) and extractors
(evaluation/features.py), so the metric table is whole wherever it is read. The door for a
plugin's own metrics and extractors:

    from evaluation import Metric, register_metric, register_extractor
"""

from evaluation import features, measures  # noqa: F401 - they register the built-ins
from evaluation.features import register_extractor
from evaluation.metrics import Metric
from evaluation.metrics import register as register_metric

__all__ = ["Metric", "register_extractor", "register_metric"]
