"""Foundation of the suite: what every layer above may use and what uses nothing above it —
errors, paths, atomic checkpoints, images, progress, signals, MLflow tracking (the only code
that talks to MLflow) and its background metric writer, the child-process guard.
"""
