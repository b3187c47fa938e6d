"""HTTP optimistic concurrency: the ETag is the portfolio's version, If-Match its expected one."""

from __future__ import annotations

import re
from typing import Final

from portfolio_core import ValidationError

_STRONG_ETAG: Final = re.compile(r'"([1-9][0-9]{0,9})"')


def etag(version: int) -> str:
    """The strong ETag of a portfolio at ``version``: ``"3"`` (quotes included)."""
    return f'"{version}"'


def expected_version(if_match: str | None) -> int | None:
    """The version an ``If-Match`` header asks for; None for no header or ``*``.

    Only one strong ETag of this service is understood; anything else
    (weak ``W/"3"``, lists, garbage) is refused with ValidationError (422)
    rather than ignored, so a client never believes it sent a precondition
    that was not applied.
    """
    if if_match is None:
        return None
    value = if_match.strip()
    if value == "*":
        return None
    match = _STRONG_ETAG.fullmatch(value)
    if match is None:
        raise ValidationError("If-Match", if_match, 'must be one strong ETag such as "3", or *')
    return int(match.group(1))
