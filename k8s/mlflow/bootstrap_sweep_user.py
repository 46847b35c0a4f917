"""Create or update the MLflow account that sweeps log in as: a user, never an admin.

Runs as the `auth-bootstrap` init container of the MLflow pod (mlflow.yaml), before the server
starts, on every start. It talks to MLflow's user store (the `database_uri` of the basic-auth
config) directly, the same way the server bootstraps its admin, so it needs no admin password
and no network access beyond PostgreSQL. Idempotent:

- the user named by MLFLOW_SWEEP_USERNAME is created with MLFLOW_SWEEP_PASSWORD if missing;
- if it exists, its password is set to MLFLOW_SWEEP_PASSWORD (rotate = change the Secret and
  restart MLflow) and its admin flag is cleared, should anyone have set it.

It refuses to run when the sweep user is the admin account (MLFLOW_AUTH_ADMIN_USERNAME): sweeps
must not hold admin rights. What the account may then do is set by `default_permission` (see
basic_auth.ini and k8s/README.md): create experiments and registered models, and manage only
those.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def ensure_sweep_user(store: Any, username: str, password: str, admin_username: str | None) -> str:
    """Make `username` a non-admin user with `password` in MLflow's user `store`; return what was done."""
    if not username:
        raise ValueError("MLFLOW_SWEEP_USERNAME is empty")
    if admin_username and username == admin_username:
        raise ValueError(f"the sweep user {username!r} is the admin account; give sweeps their own user")
    if not store.has_user(username, use_primary=True):
        try:
            store.create_user(username, password, is_admin=False)
            return "created"
        except Exception:
            if not store.has_user(username, use_primary=True):  # not created meanwhile by another replica
                raise
    store.update_user(username, password=password, is_admin=False)
    return "updated"


def main() -> int:
    # Imported here: importing mlflow.server.auth loads the whole auth app (mlflow[auth]).
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.config import read_auth_config
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    username = os.environ.get("MLFLOW_SWEEP_USERNAME", "")
    password = os.environ.get("MLFLOW_SWEEP_PASSWORD", "")
    config = read_auth_config()
    store = SqlAlchemyStore()
    store.init_db(config.database_uri)  # creates or migrates the schema, as the server would
    try:
        done = ensure_sweep_user(store, username, password, config.admin_username)
    except (ValueError, MlflowException) as e:
        print(f"auth-bootstrap: {getattr(e, 'message', e)}", file=sys.stderr)
        return 1
    print(f"auth-bootstrap: sweep user {username!r} {done} (not an admin)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
