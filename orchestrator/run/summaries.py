"""What the commands print: where a sweep's results are (with the link to open), how it ended,
the backbone ranking and the list of sweeps."""

from __future__ import annotations

import textwrap
from urllib.parse import urlsplit, urlunsplit

from mlflow.utils.file_utils import local_file_uri_to_path

from orchestrator.uris import redact

LOCAL_UI = "http://127.0.0.1:5000"
WIDTH = 120  # wrap long lines here: terminals and log viewers


def mlflow_links(tracking_uri: str, experiment_id: str | None, run_id: str | None) -> list[str]:
    """Lines saying where to see a sweep in MLflow's UI: the experiment's runs table (every trial,
    under its sweep's parent row) and the sweep's parent run. On a server, their addresses; for a
    local SQLite store, the command that starts the UI first."""
    parts = urlsplit(tracking_uri)
    if parts.scheme in ("http", "https"):
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host  # no credentials in a printed link
        base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        return _pages("MLflow UI:  ", base, experiment_id, run_id)
    if parts.scheme == "sqlite":
        return [
            f"MLflow UI:  mlflow ui --backend-store-uri {tracking_uri}   then open",
            *_pages("", LOCAL_UI, experiment_id, run_id),
        ]
    return [f"MLflow:     {redact(tracking_uri)}  run {run_id}"]


def report_address(tracking_uri: str, experiment_id: str | None, run_id: str | None, artifact_uri: str) -> str:
    """Where the sweep's report/index.html is to be read: a file to open in a browser when the
    artifacts are local, else its page in MLflow's UI (which renders it), else its artifact URI."""
    uri = f"{artifact_uri.rstrip('/')}/report/index.html"
    if urlsplit(uri).scheme in ("", "file"):
        return local_file_uri_to_path(uri)
    parts = urlsplit(tracking_uri)
    if parts.scheme in ("http", "https") and experiment_id and run_id:
        netloc = f"{parts.hostname}:{parts.port}" if parts.port else (parts.hostname or "")
        base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        return f"{base}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/report/index.html"
    return redact(uri)


def _pages(first: str, base: str, experiment_id: str | None, run_id: str | None) -> list[str]:
    if not experiment_id:
        return [f"{first or ' ' * 12}{base}"]
    table = f"{base}/#/experiments/{experiment_id}/runs"
    lines = [f"{table}   (all trials: expand the sweep's row)"]
    if run_id:
        lines.append(f"{table}/{run_id}   (this sweep's parent run)")
    return [f"{first or ' ' * 12}{lines[0]}", *(f"{' ' * 12}{line}" for line in lines[1:])]


def format_start(
    sweep_id: str, experiment: str, resumed: bool, done: int, total: int, links: list[str], report: str
) -> str:
    how = f"Resuming sweep {sweep_id} ({done} of {total} trials done)" if resumed else f"Starting sweep {sweep_id}"
    return "\n".join(
        [
            f"{how} of experiment {experiment!r}",
            *(f"  {line}" for line in links),
            f"  Report:     {report}   (written when the sweep ends)",
        ]
    )


def format_summary(s, links: list[str]) -> str:
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(s.outcomes.items())) or "none"
    lines = [
        "",
        f"Sweep {s.sweep_id} of experiment {s.experiment!r} {'resumed and ' if s.resumed else ''}finished "
        f"in {s.wall_time_s:.0f} s",
        f"  trials:          {sum(s.outcomes.values())} ({outcomes})",
    ]
    if s.best_trial_id:
        scores = ", ".join(f"{k} {_short(v)}" for k, v in s.best_metrics.items() if k.startswith("val_"))
        epoch = f" at epoch {s.best_metrics['epoch']}" if "epoch" in s.best_metrics else ""
        config = " ".join(f"{k}={_short(v)}" for k, v in sorted(s.best_config.items()))
        lines.append(f"  best trial:      {s.best_trial_id}  {scores}{epoch}")
        lines += textwrap.wrap(config, width=WIDTH, initial_indent=" " * 19, subsequent_indent=" " * 19)
    else:
        lines.append("  best trial:      none reached max_epochs, so no model was registered")
    if s.front:
        shown = ", ".join(s.front[:8]) + (f", ... {len(s.front) - 8} more" if len(s.front) > 8 else "")
        lines.append(f"  Pareto front:    {len(s.front)} trials ({shown}), tagged pareto=true in MLflow")
    if s.model_version:
        lines.append(
            f"  model:           {s.registered_model!r} version {s.model_version} (alias champion)  {s.model_uri}"
        )
    elif s.model_uri:
        lines.append(f"  model:           {s.model_uri}  (not registered: the spec sets no mlflow.register_best_as)")
    lines += [
        f"  Optuna:          optuna-dashboard {s.optuna_storage}   (study {s.sweep_id!r})",
        f"  Ray results:     {s.ray_path}",
        *(f"  {line}" for line in links),
    ]
    if s.report:
        lines.append(s.report)
    return "\n".join(lines)


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def format_rank(r) -> str:
    width = max(len("backbone"), *(len(s.backbone) for s in r.scores))
    lines = [
        "",
        f"Transferability to {r.num_classes} classes ({r.train_images} training images), "
        f"from {r.weights} weights, best first (higher is better):",
        f"  {'backbone':<{width}}  {'LogME':>8}  {'LEEP':>8}  {'dim':>5}  {'seconds':>7}",
    ]
    for s in r.scores:
        leep = f"{s.leep:8.3f}" if s.leep is not None else f"{'-':>8}"
        lines.append(f"  {s.backbone:<{width}}  {s.logme:8.3f}  {leep}  {s.feature_dim:>5}  {s.seconds:7.2f}")
    lines += [f"  LEEP of {s.backbone} is undefined: {s.leep_note}" for s in r.scores if s.leep is None]
    lines.append(f"Ranked in {r.wall_time_s:.0f} s")
    lines.append(f"  MLflow:  {redact(r.tracking_uri)}  experiment {r.experiment!r}, run {r.run_id} ('rank')")
    return "\n".join(lines)


def format_sweeps(rows) -> str:
    """`orchestrator list`: one line per sweep, the current sweep of each experiment marked *."""
    if not rows:
        return "No sweeps."
    header = ("experiment", "sweep", "state", "trials", "best", "epochs run", "")
    table = [header]
    for row in rows:
        best = f"{row.objective.split(' ')[0]} {row.best:.4g}" if row.best is not None else "-"
        table.append(
            (
                row.experiment,
                f"{row.sweep_id}{' *' if row.current else ''}",
                row.state,
                f"{row.ended}/{row.asked}",
                best,
                str(row.epochs) if row.epochs is not None else "-",
                f"({row.holder})" if row.holder else "",
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in table]
    return "\n".join([*lines, "* the experiment's current sweep (the one `orchestrator sweep SPEC` resumes)"])
