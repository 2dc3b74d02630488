"""Small operations the migrations share."""

from __future__ import annotations

from alembic import op


def drop_plain_columns(table: str, *columns: str) -> None:
    """Drop columns that no constraint or index names.

    On SQLite, Alembic's batch mode would recreate the table, and dropping a table that other
    tables reference fails with foreign keys on; SQLite (3.35+) drops a plain column in place.
    """
    sqlite = op.get_bind().dialect.name == "sqlite"
    for column in columns:
        if sqlite:
            op.execute(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
        else:
            op.drop_column(table, column)
