"""rule deployments keep what publish checked

Revision ID: 9aec6628341b
Revises: bcf3e5eb6a22
Create Date: 2026-12-03 18:02:10.991470
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "9aec6628341b"
down_revision: str | None = "bcf3e5eb6a22"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # What `rules publish` checked before activating (tests, changes, backtest).
    op.add_column(
        "rule_deployments",
        sa.Column("summary", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("rule_deployments", "summary")
