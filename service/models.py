"""Imports every domain's models so `Base.metadata` is complete (for Alembic)."""

from service.actions import models as actions_models
from service.auth import models as auth_models
from service.db import Base
from service.decisions import models as decisions_models
from service.events import models as events_models
from service.experiments import models as experiments_models
from service.health import models as health_models
from service.pipeline import models as pipeline_models
from service.profiles import models as profiles_models
from service.rules import models as rules_models
from service.ruleset import models as ruleset_models
from service.segments import models as segments_models

__all__ = [
    "Base",
    "actions_models",
    "auth_models",
    "decisions_models",
    "events_models",
    "experiments_models",
    "health_models",
    "pipeline_models",
    "profiles_models",
    "rules_models",
    "ruleset_models",
    "segments_models",
]
