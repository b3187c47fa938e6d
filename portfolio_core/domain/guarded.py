"""Read-only domain fields: readable by anyone, changed only by the domain's own methods.

A :class:`DomainField` named ``cash_balance`` reads the mapped private
attribute ``_cash_balance`` (``persistence.mapping`` maps the column onto
it) and refuses assignment: a value set from outside would reach the
database without a recorded operation, so the audit trail could no longer
replay the stored state (and a float or an over-precise Decimal would be
stored as given). Domain methods assign the private attribute.
"""

from __future__ import annotations

from typing import Any, Generic, Never, NoReturn, TypeVar, overload

from portfolio_core.domain.money import fixed

T = TypeVar("T")


class DomainField(Generic[T]):
    """A read-only view of the private attribute ``_<name>``."""

    def __init__(self, doc: str, *, amount: bool = False) -> None:
        self.__doc__ = doc
        self.name = ""
        self.private = ""
        # An amount (Decimal, or None while unset) is read as FixedPoint, so it
        # prints 0.00000000, not 0E-8; the stored attribute keeps what it got.
        self.amount = amount

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name
        self.private = f"_{name}"

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> DomainField[T]: ...

    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type[Any] | None = None) -> Any:
        if instance is None:
            return self
        value = getattr(instance, self.private)
        return fixed(value) if self.amount and value is not None else value

    # ``value: Never``: mypy flags an assignment before it ever runs.
    def __set__(self, instance: object, value: Never) -> NoReturn:
        owner = type(instance).__name__
        raise AttributeError(
            f"{owner}.{self.name} is read-only: change it through the domain's methods "
            "(deposit, withdraw, open_position, close_position, ...) so the change is recorded"
        )
