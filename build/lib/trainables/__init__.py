"""What runs on Ray workers: data, timm models, the transfer policy and the fine-tuning trial.

Never imports `orchestrator`; the contract is the flat trial config (see `hyperparams`) and
the metrics each trial reports. Modules are imported where they are used (`trainables.finetune`,
`trainables.hyperparams`, ...), so checking a spec does not load torch.
"""
