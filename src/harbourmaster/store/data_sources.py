"""Reading training (and later production) data: CSV, Parquet or a SQL query."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from harbourmaster.errors import DataSourceError

if TYPE_CHECKING:
    import pandas as pd

TABULAR_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class DataSource:
    """Where a frame comes from: a file path/URL, or a SQL query against a URL."""

    path: str | None = None
    url: str | None = None
    query: str | None = None

    def describe(self) -> str:
        if self.path is not None:
            return self.path
        return f"{self.query!r} on {_redact(self.url or '')}"


def _redact(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def _resolve(path: str, base_dir: Path | None) -> str:
    if "://" in path:
        return path
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and base_dir is not None:
        candidate = base_dir / candidate
    return str(candidate)


def load_frame(source: DataSource, base_dir: Path | None = None) -> pd.DataFrame:
    """Read a data source into a DataFrame, with an error that names what is wrong."""
    if source.path is not None:
        return _load_file(_resolve(source.path, base_dir))
    if source.url and source.query:
        return _load_query(source.url, source.query)
    raise DataSourceError(
        "no data source given",
        'set source = "data.csv" (or url and query) under [data] in harbourmaster.toml',
    )


def _load_file(location: str) -> pd.DataFrame:
    import pandas as pd

    suffix = Path(location.split("?")[0]).suffix.lower()
    kind = TABULAR_SUFFIXES.get(suffix)
    if kind is None:
        raise DataSourceError(
            f"data source {location} is neither CSV nor Parquet",
            "use a file ending in .csv, .parquet or .pq",
        )
    if "://" not in location and not Path(location).exists():
        raise DataSourceError(
            f"data source {location} does not exist",
            "check the path under [data] source (it is relative to the project folder)",
        )
    try:
        frame = pd.read_csv(location) if kind == "csv" else pd.read_parquet(location)
    except FileNotFoundError as exc:
        raise DataSourceError(f"data source {location} does not exist", "check the path or URL") from exc
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataSourceError(
            f"data source {location} cannot be read as {kind}: {exc}",
            f"check that the file is valid {kind}",
        ) from exc
    return _require_rows(frame, location)


def _load_query(url: str, query: str) -> pd.DataFrame:
    import pandas as pd

    try:
        engine = create_engine(url)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise DataSourceError(
            f"data source URL {_redact(url)} is not usable: {exc}",
            "use a SQLAlchemy URL such as postgresql+psycopg://host/db",
        ) from exc
    except ImportError as exc:  # a known dialect whose driver is not installed
        raise DataSourceError(
            f"data source URL {_redact(url)} needs a database driver that is not installed: {exc}",
            f"install the driver ({exc.name or 'see the SQLAlchemy dialect docs'}) or name an installed one "
            "in the URL, e.g. postgresql+psycopg://",
        ) from exc
    try:
        with engine.connect() as connection:
            frame = pd.read_sql_query(text(query), connection)
    except (SQLAlchemyError, pd.errors.DatabaseError) as exc:
        # pandas wraps the driver's error in its own DatabaseError (with the SQLAlchemy one as cause).
        cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) and exc.__cause__ else exc
        reason = str(getattr(cause, "orig", None) or cause).strip().splitlines()[0]
        raise DataSourceError(
            f"query on {_redact(url)} failed: {reason}",
            "check the query and that the database is reachable",
        ) from exc
    finally:
        engine.dispose()
    return _require_rows(frame, _redact(url))


def _require_rows(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    if frame.empty:
        raise DataSourceError(f"data source {where} has no rows", "point the project at data with rows")
    return frame
