"""Sample-quality metrics, mode-collapse and memorization checks."""
