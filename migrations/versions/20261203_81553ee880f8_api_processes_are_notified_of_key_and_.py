"""api processes are notified of key and rule changes

Every API process keeps the keys it has checked and the rules it has compiled. A
statement that changes `api_keys` (a revocation above all) or `rule_deployments` sends
a notification in its transaction, delivered when it commits, whatever made the change
(the CLI, the API, SQL by hand); each API process listens (service/decisions/keys.py).

Revision ID: 81553ee880f8
Revises: 5555f1caf844
Create Date: 2026-12-03 10:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "81553ee880f8"
down_revision: str | None = "5555f1caf844"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table → the statements announced, on a channel of the table's name (a new key
# changes nothing a process has cached; a new deployment does)
CHANGES = {
    "api_keys": "UPDATE OR DELETE OR TRUNCATE",
    "rule_deployments": "INSERT OR UPDATE OR DELETE OR TRUNCATE",
}


def upgrade() -> None:
    for table, statements in CHANGES.items():
        op.execute(
            f"""
            CREATE FUNCTION notify_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('{table}', '');
                RETURN NULL;
            END
            $$
            """
        )
        op.execute(
            f"CREATE TRIGGER {table}_changed AFTER {statements}"
            f" ON {table} FOR EACH STATEMENT EXECUTE FUNCTION notify_{table}()"
        )


def downgrade() -> None:
    for table in CHANGES:
        op.execute(f"DROP TRIGGER {table}_changed ON {table}")
        op.execute(f"DROP FUNCTION notify_{table}()")
