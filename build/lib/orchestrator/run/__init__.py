"""Running a sweep from start to end: the commands, the Tuner, the ledger, the recording pass, the check."""

from orchestrator.run.audit import INVARIANTS, Audit
from orchestrator.run.commands import check_sweep, rank_spec, report_sweep, run_sweep, sync_sweep
from orchestrator.run.finish import EXIT_INTERRUPTED, SweepInterrupted, SweepSummary
from orchestrator.run.inputs import source_task, target_task
from orchestrator.run.pretrained import CACHE_DIR
from orchestrator.run.validate import validate

__all__ = [
    "Audit",
    "CACHE_DIR",
    "EXIT_INTERRUPTED",
    "INVARIANTS",
    "SweepInterrupted",
    "SweepSummary",
    "check_sweep",
    "rank_spec",
    "report_sweep",
    "run_sweep",
    "source_task",
    "sync_sweep",
    "target_task",
    "validate",
]
