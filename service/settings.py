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
    db_pre_ping: bool = False

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

    # Identity and contact data. IDENTITY_HASH_KEY keys the HMAC under which emails and
    # phones are matched; PII_ENCRYPTION_KEYS (comma-separated Fernet keys, newest
    # first) encrypt the raw values. The embedded default creates both under DATA_DIR.
    identity_hash_key: str | None = None
    pii_encryption_keys: str | None = None
    # Values that never identify anyone (shared test emails, placeholder ids): never
    # matched, never merged on.
    identity_blocklist: list[str] = Field(
        default_factory=lambda: [
            "test@test.com",
            "test@example.com",
            "noreply@example.com",
            "null",
            "undefined",
            "none",
            "0",
        ]
    )
    default_phone_region: str = "US"

    # Webhooks: per source, the accepted signing secrets (two during a rotation), as
    # JSON: {"shopify": ["new", "old"], "woocommerce": ["…"], "bigcommerce": ["…"]}.
    webhook_secrets: dict[str, list[str]] = Field(default_factory=dict)
    # Web origins whose browsers may call the API (analytics.js sending from the shop).
    cors_allowed_origins: list[str] = Field(default_factory=list)
    webhook_tolerance_s: int = Field(default=300, ge=1)
    webhook_max_bytes: int = Field(default=1_048_576, ge=1024)

    # Events API limits, as Segment's: 500 KB a batch, 32 KB an event, 500 events.
    events_max_batch_bytes: int = Field(default=512_000, ge=1024)
    events_max_event_bytes: int = Field(default=32_768, ge=256)
    events_max_batch: int = Field(default=500, ge=1)

    # How often the scheduler sweeps for stored events not yet resolved onto profiles
    # (each commit that stores events also nudges a worker at once).
    resolve_sweep_s: float = Field(default=1.0, gt=0)

    # How often RFM scores are recomputed across the customer base.
    rfm_interval_s: float = Field(default=3600.0, gt=0)

    # Rule files (one ruleset per YAML file); the API process activates edits on its own.
    rules_dir: Path = Path("rules")
    rules_watch: bool = True
    # An event older than this when rules evaluate it triggers nothing (a late delivery
    # of an old cart must not send today's reminder).
    rules_max_event_age_s: int = Field(default=86_400, ge=1)
    # How often the scheduler looks for waiting rules that are due.
    rules_due_sweep_s: float = Field(default=1.0, gt=0)
    # Consent per purpose when the profile says nothing (`traits.consent.<purpose>`).
    consent_defaults: dict[str, bool] = Field(default_factory=lambda: {"marketing": False})
    # The currency of `profile.total_spent` in rules (amounts are never converted).
    shop_currency: str = Field(default="USD", min_length=3, max_length=3)

    # Environment name, shown in logs.
    environment: str = "development"


@lru_cache
def get_settings() -> Settings:
    return Settings()
