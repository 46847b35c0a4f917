"""What runs on Ray workers: data, timm models, the transfer policy and the fine-tuning trial.

Never imports `orchestrator`; the contract is the flat trial config (see `hyperparams`) and
the metrics each trial reports.
"""

from trainables.finetune import finetune
from trainables.hyperparams import HYPERPARAMETERS

__all__ = ["HYPERPARAMETERS", "finetune"]
