"""Pagination of console lists: offset pages with a bounded size, links that keep the other query values."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import Request

DEFAULT_SIZE = 50
MAX_SIZE = 200


@dataclass(frozen=True)
class Pager:
    """Which slice of a list a page shows; ``total`` may be None when counting would be slow."""

    offset: int
    size: int
    shown: int
    total: int | None
    has_more: bool
    request_query: tuple[tuple[str, str], ...]
    path: str
    param: str = "offset"  # the query parameter of this list's offset (two lists on one page differ)
    # Keyset paging: the query values that point the older and the newer page at an entry of this one
    # (e.g. ("before", "1234")); the offset then only numbers the rows.
    older: tuple[str, str] | None = None
    newer: tuple[str, str] | None = None

    def link(self, offset: int, cursor: tuple[str, str] | None = None) -> str:
        cursors = {c[0] for c in (self.older, self.newer) if c}
        query = [(k, v) for k, v in self.request_query if k != self.param and k not in cursors]
        if offset > 0:
            query.append((self.param, str(offset)))
            if cursor:
                query.append(cursor)
        return self.path + ("?" + urlencode(query) if query else "")

    @property
    def previous(self) -> str | None:
        return self.link(max(0, self.offset - self.size), self.newer) if self.offset > 0 else None

    @property
    def next(self) -> str | None:
        return self.link(self.offset + self.size, self.older) if self.has_more else None

    @property
    def first_shown(self) -> int:
        return self.offset + 1 if self.shown else 0

    @property
    def last_shown(self) -> int:
        return self.offset + self.shown


def page_window(offset: int | None, size: int | None) -> tuple[int, int]:
    """A sane (offset, size) from query values."""
    return max(0, offset or 0), min(MAX_SIZE, max(1, size or DEFAULT_SIZE))


def pager(
    request: Request,
    offset: int,
    size: int,
    shown: int,
    total: int | None,
    has_more: bool,
    param: str = "offset",
    older: tuple[str, str] | None = None,
    newer: tuple[str, str] | None = None,
) -> Pager:
    return Pager(
        older=older,
        newer=newer,
        param=param,
        offset=offset,
        size=size,
        shown=shown,
        total=total,
        has_more=has_more,
        request_query=tuple(request.query_params.multi_items()),
        path=request.url.path,
    )
