"""Imports every domain's models so `Base.metadata` is complete (for Alembic)."""

from service.auth import models as auth_models
from service.db import Base
from service.health import models as health_models

__all__ = ["Base", "auth_models", "health_models"]
