"""What runs on Ray workers: data, timm models, the transfer policy and the fine-tuning trial
(`trainables.finetune.finetune`).

Never imports `orchestrator`; the contract is the flat trial config (see `hyperparams`) and
the metrics each trial reports. The package itself imports nothing, so a module that needs only
a light part of it (`trainables.history`, say) does not pull in torch and timm.
"""
