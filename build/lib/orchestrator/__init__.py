"""Transfer-learning sweeps: Ray Tune schedules timm fine-tuning trials, Optuna searches, MLflow records."""

__version__ = "0.1.0"
