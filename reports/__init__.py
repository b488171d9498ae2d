"""Reports built from MLflow runs and Optuna studies."""
