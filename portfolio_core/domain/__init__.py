"""The domain model: pure Python, no SQLAlchemy (see ``portfolio_core.persistence``)."""

from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import Position, PositionRequest

__all__ = ["Portfolio", "Position", "PositionRequest"]
