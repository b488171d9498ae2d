"""GAN benchmark suite: faithful recipes, honest metrics, MLflow tracking.

    python -m suite list
    python -m suite run dcgan_fashion --max-steps 200
"""

__version__ = "0.1.0"
