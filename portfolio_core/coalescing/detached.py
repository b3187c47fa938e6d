"""What a coalesced caller gets back: its result as it was right after its own operation.

The operations of one batch run on one loaded aggregate, so a Position or
Portfolio an operation returns is the live object the next operations go on
changing. Each caller is handed :func:`detached_copy` of its result, taken
right after its operation ran: mapped objects (also inside a list, tuple,
set or dict) are copied column by column into new detached instances, as
``PortfolioStore.get`` builds its snapshot (``persistence.snapshot_rows``);
no ORM state is deep-copied. Other values are handed over as they are.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import class_mapper, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import Position


def detached_copy(result: Any) -> Any:
    """``result`` with every Position/Portfolio (also in a list, tuple, set, dict) copied."""
    if isinstance(result, Position | Portfolio):
        return _copy(result)
    if type(result) in (list, tuple, set, frozenset):
        return type(result)(detached_copy(item) for item in result)
    if type(result) is dict:
        return {key: detached_copy(value) for key, value in result.items()}
    return result


def _copy(original: Portfolio | Position) -> Any:
    state = inspect(original)
    mapper = class_mapper(type(original))
    values: dict[str, Any] = {}
    for prop in mapper.column_attrs:
        if prop.key in original.__dict__:
            values[prop.key] = original.__dict__[prop.key]
        elif state.persistent:  # expired by a flush (a server default): read in the batch
            values[prop.key] = getattr(original, prop.key)
    copy = mapper.class_manager.new_instance()
    copy.__dict__.update(values)
    session = state.session
    if (
        isinstance(original, Position)
        and session is not None
        and state.persistent
        and session.is_modified(original)
    ):
        # Not flushed yet (the fast way): the batch's one flush bumps it once.
        copy.__dict__["_version"] = original.version + 1
    if isinstance(original, Portfolio):
        open_positions = [_copy(p) for p in original.positions.values()]
        set_committed_value(copy, "_positions", open_positions)
        set_committed_value(copy, "_closed", [_copy(p) for p in original.closed_positions])
    if state.key is not None or values.get("id") is not None:
        make_transient_to_detached(copy)
    return copy
