"""Procore-style page/per_page pagination: pure math plus the Total/Per-Page/Link headers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import urlencode

T = TypeVar("T")

DEFAULT_PER_PAGE = 100


@dataclass(frozen=True)
class PageRequest:
    page: int
    per_page: int


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    page: int
    per_page: int

    @property
    def last_page(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


def _to_int(raw: str | None) -> int | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def parse_page_params(
    page: str | None, per_page: str | None, *, max_per_page: int, default_per_page: int = DEFAULT_PER_PAGE
) -> PageRequest:
    """Lenient like Procore: junk or out-of-range values fall back to defaults / are clamped."""
    page_n = _to_int(page)
    per_page_n = _to_int(per_page)
    if page_n is None or page_n < 1:
        page_n = 1
    if per_page_n is None or per_page_n < 1:
        per_page_n = default_per_page
    return PageRequest(page=page_n, per_page=min(per_page_n, max_per_page))


def paginate(items: Sequence[T], request: PageRequest) -> Page[T]:
    start = (request.page - 1) * request.per_page
    return Page(
        items=list(items[start : start + request.per_page]),
        total=len(items),
        page=request.page,
        per_page=request.per_page,
    )


def link_header(base_url: str, query: Sequence[tuple[str, str]], page: Page[T]) -> str:
    """RFC 5988 Link header with first/prev/next/last; `next` is omitted on the last page."""
    kept = [(k, v) for k, v in query if k not in ("page", "per_page")]

    def url(n: int) -> str:
        return f"{base_url}?{urlencode([*kept, ('page', str(n)), ('per_page', str(page.per_page))])}"

    rels: list[tuple[str, int]] = [("first", 1)]
    if page.page > 1:
        rels.append(("prev", min(page.page - 1, page.last_page)))
    if page.page < page.last_page:
        rels.append(("next", page.page + 1))
    rels.append(("last", page.last_page))
    return ", ".join(f'<{url(n)}>; rel="{rel}"' for rel, n in rels)


def page_headers(base_url: str, query: Sequence[tuple[str, str]], page: Page[T]) -> dict[str, str]:
    return {
        "Total": str(page.total),
        "Per-Page": str(page.per_page),
        "Link": link_header(base_url, query, page),
    }
