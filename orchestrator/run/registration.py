"""A trial's model in the Model Registry: rebuilt from its final checkpoint, logged in its run,
registered with its objective values as tags. The best trial gets the `champion` alias; with
several objectives every trial on the Pareto front is a version, so the user can pick another."""

from __future__ import annotations

import torch

from orchestrator.errors import UserError
from orchestrator.run.recording import RecordedTrial
from orchestrator.run.session import Sweep
from orchestrator.tracking import Registered, register_best
from trainables.data import TaskData
from trainables.finetune import load_checkpoint_model
from trainables.models import ImageClassifier
from trainables.transforms import data_config


def trial_backbone(sweep: Sweep, trial: RecordedTrial, target: TaskData) -> torch.nn.Module:
    if trial.final_checkpoint is None:
        where = sweep.storage.display(sweep.spec.experiment, sweep.sweep_id, trial.trial_id)
        raise UserError(
            f"trial {trial.trial_id} has no checkpoint with its final weights in {where}; nothing was registered"
        )
    with sweep.storage.local_copy(trial.final_checkpoint) as directory:
        return load_checkpoint_model(directory, trial.config, target.num_classes)


def register_trial(
    sweep: Sweep, trial: RecordedTrial, backbone: torch.nn.Module, target: TaskData, *, champion: bool
) -> Registered:
    spec, runs = sweep.spec, sweep.runs
    size = data_config(backbone, spec.data.image_size)["input_size"]
    model = ImageClassifier(backbone, target.class_names, input_size=size[1:]).eval()
    values = dict(zip(spec.objective_keys, trial.finals, strict=True))
    shown = ", ".join(f"{key} {value:.4g}" for key, value in values.items())
    role = "Best trial" if champion else "Pareto-front trial"
    return register_best(
        runs.client,
        experiment_id=runs.experiment_id,
        run_id=trial.run_id,
        model=model,
        input_example=torch.rand(2, *size).numpy(),
        class_names=list(target.class_names),
        name=spec.mlflow.register_best_as,
        description=(
            f"{role} {trial.trial_id} of sweep {sweep.sweep_id} (experiment {spec.experiment!r}): "
            f"{trial.config.get('backbone')}, final {shown} after {trial.last_epoch} epochs. "
            f"Takes RGB images in [0, 1] of shape [N, 3, H, W], any H and W (resized to {size[1]}x{size[2]} "
            f"inside, the size it trained at); returns logits over {list(target.class_names)}."
        ),
        tags={
            **{key: f"{value:.6g}" for key, value in values.items()},
            "backbone": str(trial.config.get("backbone")),
            "input_size": f"{size[1]}x{size[2]}",
            "classes": ",".join(target.class_names),
            "sweep_id": sweep.sweep_id,
            "ray.trial_id": trial.trial_id,
            **({"pareto": "true"} if len(spec.objectives) > 1 else {}),
        },
        champion=champion,
    )
