"""Ray's records of each trial, kept whole across restarts and read back from storage as JSON.

Ray writes a trial's result.json on the driver's disk and uploads it with the experiment
snapshot, about every 10 s. When a trial restarts (its worker or node died, or a new driver
resumed the sweep), Ray replaces the local file with the uploaded copy (ray-project/ray#38576):
the lines written since the last upload are lost, and after a driver crash the lines never
uploaded are gone with the machine. The trial itself keeps the durable copy: each checkpoint
carries the history of every epoch so far (`trainables.history`), written to storage by the
worker before Tune hears of the result. `ResultLog` rebuilds a restarting trial's file from
the newest copy plus that history, cut at the epoch the trial resumes from, so each epoch
appears once, and `read_trial` fills any epoch an interrupted upload left out."""

from orchestrator.records.repair import CheckpointRepair, repair
from orchestrator.records.result_log import ResultLog
from orchestrator.records.trials import TrialRecords, checkpoint_history, complete_checkpoints, read_trial, with_history

__all__ = [
    "CheckpointRepair",
    "ResultLog",
    "TrialRecords",
    "checkpoint_history",
    "complete_checkpoints",
    "read_trial",
    "repair",
    "with_history",
]
