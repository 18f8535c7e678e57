"""One settings object, read from the environment (see docs/settings.md for the table)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    # Where data lives. With DATABASE_URL unset the service starts an embedded
    # PostgreSQL whose files live under DATA_DIR.
    database_url: str | None = None
    data_dir: Path = Path(".data")
    db_pool_size: int = Field(default=10, ge=1)
    db_connect_timeout_s: int = Field(default=5, ge=1)

    # Celery broker. Unset: kombu's SQLAlchemy transport on the same PostgreSQL.
    broker_url: str | None = None

    # HTTP
    host: str = "127.0.0.1"
    port: int = 8000
    api_workers: int = Field(default=1, ge=1)

    # Logs
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"

    # Health checks give up on a dependency after this long.
    readiness_timeout_s: float = Field(default=2.0, gt=0)

    # Worker liveness: how often each worker records a heartbeat.
    heartbeat_interval_s: float = Field(default=30.0, gt=0)

    # Environment name, shown in logs.
    environment: str = "development"


@lru_cache
def get_settings() -> Settings:
    return Settings()
