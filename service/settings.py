"""One settings object, read from the environment (see docs/settings.md for the table)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, HttpUrl
from pydantic_settings import BaseSettings, SettingsConfigDict


class Destination(BaseModel):
    url: HttpUrl
    secret: str = Field(min_length=1)
    timeout_s: float = Field(default=5.0, gt=0, le=60)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    # Where data lives. With DATABASE_URL unset the service starts an embedded
    # PostgreSQL whose files live under DATA_DIR.
    database_url: str | None = None
    data_dir: Path = Path(".data")
    db_pool_size: int = Field(default=10, ge=1)
    db_connect_timeout_s: int = Field(default=5, ge=1)
    db_pre_ping: bool = False
    # While the database cannot be reached requests get 503 with this Retry-After.
    db_unavailable_retry_after_s: int = Field(default=5, ge=1, le=3600)

    # Celery broker. Unset: kombu's SQLAlchemy transport on the same PostgreSQL.
    broker_url: str | None = None
    # The queue tasks go to and workers read by default (environments sharing a
    # broker keep apart by giving each its own).
    broker_queue: str = Field(default="celery", min_length=1)

    # HTTP
    host: str = "127.0.0.1"
    port: int = 8000
    api_workers: int = Field(default=1, ge=1)
    # The largest request body of a route without a limit of its own (events, webhooks
    # and decisions have theirs).
    http_max_body_bytes: int = Field(default=65_536, ge=1024)

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
    # The quarantine's list pages hold at most this much JSON (and at most `limit` items).
    quarantine_page_max_bytes: int = Field(default=262_144, ge=16_384)
    # An event's time (events API, Segment calls, every webhook mapping) lies between
    # 2000-01-01 and this far past the moment it is received; outside, it is rejected
    # with the field named (a signed webhook is kept in the quarantine).
    event_max_future_s: int = Field(default=300, ge=0, le=86_400)

    # How often the scheduler sweeps for stored events not yet resolved onto profiles
    # (each commit that stores events also nudges a worker at once).
    resolve_sweep_s: float = Field(default=1.0, gt=0)

    # How often RFM scores are recomputed across the customer base.
    rfm_interval_s: float = Field(default=3600.0, gt=0)

    # Segments: how often every customer's membership is recomputed (time alone moves
    # people out of "added to cart in the last 24 h"), and how many customers one
    # committed batch of a refresh or backfill takes.
    segment_refresh_s: float = Field(default=300.0, gt=0)
    segment_batch_size: int = Field(default=1000, ge=1, le=10_000)

    # Rule files (one ruleset per YAML file). With RULES_WATCH on, the API process
    # activates every saved edit on its own (hot reload); off, the files on disk are a
    # draft until `personalize rules publish` (or a reload) activates them. Unset: on
    # where ENVIRONMENT is `development`, off anywhere else.
    rules_dir: Path = Path("rules")
    rules_watch: bool | None = None
    # An event older than this when rules evaluate it triggers nothing (a late delivery
    # of an old cart must not send today's reminder).
    rules_max_event_age_s: int = Field(default=86_400, ge=1)
    # Consent per purpose when the profile says nothing (`traits.consent.<purpose>`).
    consent_defaults: dict[str, bool] = Field(default_factory=lambda: {"marketing": False})
    # The currency of `profile.total_spent` in rules (amounts are never converted).
    shop_currency: str = Field(default="USD", min_length=3, max_length=3)

    # Actions. The timers process (`personalize timers`) wakes at least this often to
    # decide waiting rules that are due and hand ready actions to workers.
    timers_poll_s: float = Field(default=0.2, gt=0)
    # A worker holds an action this long while delivering it; a worker that died
    # mid-delivery leaves it to be taken again after that.
    action_lease_s: float = Field(default=60.0, gt=0)
    # An action handed to the broker but not taken within this long is handed again.
    action_reenqueue_s: float = Field(default=30.0, gt=0)
    # Delivery attempts before an action is `dead`, and the exponential backoff between
    # them (full jitter; a 429's Retry-After is honoured up to the cap).
    action_max_attempts: int = Field(default=8, ge=1)
    action_retry_base_s: float = Field(default=2.0, gt=0)
    action_retry_max_s: float = Field(default=3600.0, gt=0)
    # Outgoing webhooks by name (a rule's `webhook.destination`, an offer's
    # `destination`), as JSON: {"crm": {"url": "https://…", "secret": "whsec_…",
    # "timeout_s": 5}}. Bodies are signed with the Standard Webhooks scheme.
    action_destinations: dict[str, Destination] = Field(default_factory=dict)
    # Email over SMTP. Templates are `<name>.yaml` files (subject, text) in
    # RULES_DIR/templates.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    email_from: str = "offers@example.com"
    # At most this many actions per channel per customer in any 24 hours.
    frequency_caps: dict[str, int] = Field(default_factory=lambda: {"email": 1})
    # No email between these local times (the customer's `traits.timezone`, else
    # DEFAULT_TIMEZONE): it waits for the morning. Empty: no quiet hours.
    quiet_hours: str = Field(default="21:00-08:00", pattern=r"^$|^\d{2}:\d{2}-\d{2}:\d{2}$")
    default_timezone: str = "UTC"
    # Offers without `expires_in`, and content set by a rule, are kept this long.
    inbox_default_ttl_s: int = Field(default=7 * 86_400, ge=1)

    # Decisions. The storefront's answer never waits longer than this for the database:
    # after it, the defaults are served with `degraded: true`.
    decision_budget_ms: int = Field(default=50, ge=5, le=5000)
    # Connections per API process for the decision endpoint's reads (a pool of their
    # own, so other endpoints never hold them up).
    decision_pool_size: int = Field(default=10, ge=1)
    # The decision log is written by a background thread in batches; at most this many
    # wait in memory (beyond, the oldest are dropped and counted, never the response).
    decision_log_max_pending: int = Field(default=20_000, ge=100)
    decision_log_flush_s: float = Field(default=0.5, gt=0)
    decision_log_background: bool = True
    # Answer POST /v1/decisions before FastAPI's routing and dependency machinery (the
    # same code and answers; false: through the router, at several times the CPU).
    decision_fast_path: bool = True
    # A customer's snapshot (profile, segments, inbox) read for a decision is reused
    # for this long by the same API process: the most out of date a decision's segments
    # can be, beyond the membership update itself. 0 turns the cache off.
    decision_cache_ttl_s: float = Field(default=1.0, ge=0, le=60)
    decision_cache_size: int = Field(default=50_000, ge=1)

    # Environment name, shown in logs; anything but `development` turns the rules
    # watcher off unless RULES_WATCH says otherwise.
    environment: str = "development"

    @property
    def watch_rules(self) -> bool:
        """Whether the API activates edits of RULES_DIR as they are saved."""
        if self.rules_watch is not None:
            return self.rules_watch
        return self.environment == "development"


@lru_cache
def get_settings() -> Settings:
    return Settings()
