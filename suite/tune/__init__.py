"""Hyperparameter studies: the search space and study spec (`space`, `spec`), the Optuna queue
shared with benchmarks (`storage`), the study loop (`study`) and its summary (`summary`).

    python -m suite tune wgan_fashion --trials 12 --max-steps 300 --workers 2
"""
