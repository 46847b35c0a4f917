"""The end of a sweep: a report that cannot be built never fails it."""

from orchestrator.run.finish import report_or_warn
from orchestrator.run.session import Sweep
from orchestrator.spec import load_spec
from orchestrator.store import Storage, SweepRecord
from orchestrator.tracking import SweepRuns
from tests.orchestrator.spec.test_loading import GOOD


def test_a_report_that_fails_warns_in_one_line_and_never_fails_the_sweep(write_spec, capsys):
    runs = SweepRuns("nosuchstore://x", "unit", "sweep-1", 3, "val_acc", parent_run_id="x")  # MLflow refuses it
    spec = load_spec(write_spec(GOOD))
    sweep = Sweep(spec, "spec.yaml", Storage("./runs"), SweepRecord("sweep-1", "h"), runs, "sqlite://")
    assert report_or_warn(sweep, None) == ""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: the sweep report could not be built (")
    assert err[0].endswith("retry with `orchestrator report SPEC`")
