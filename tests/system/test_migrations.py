from __future__ import annotations

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from service import db


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_models_match_migrations(database_url: str) -> None:
    """`alembic check`: autogenerate finds nothing to add, drop or alter."""
    command.check(db.alembic_config(database_url))


def test_upgrade_empty_database_to_head_and_back_down(make_database) -> None:
    url = make_database("migrate", migrate=False)
    config = db.alembic_config(url)
    assert tables(url) == set()

    command.upgrade(config, "head")
    expected = {t.name for t in db.Base.metadata.sorted_tables}
    assert expected <= tables(url)

    command.downgrade(config, "base")
    assert tables(url) == {"alembic_version"}

    command.upgrade(config, "head")
    assert expected <= tables(url)


def test_single_head() -> None:
    heads = ScriptDirectory.from_config(db.alembic_config("postgresql://x/y")).get_heads()
    assert len(heads) == 1
