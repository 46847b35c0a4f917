"""Ray worker set-up (`worker_process_setup_hook`): the trials' logs without per-checkpoint chatter."""

from __future__ import annotations

import logging


def quiet_worker_logs() -> None:
    """Runs in every Ray worker: drop Ray Train's and Tune's INFO lines about each checkpoint."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
