"""A cached property without a lock shared by every instance.

Python 3.11's :func:`functools.cached_property` computes each value under
one lock per property of a class, held by whichever instance computes it
(Python 3.12 dropped the lock). A process forked while another thread of
the parent computed, say, some model's ``cross_products`` inherited that
lock held, and its first ``cross_products`` of any model waited for ever:
``bootstrap(n_jobs=2)`` hung when started while another thread built a
model. This one keeps no lock, as Python 3.12's: two threads asking at once
may both compute the value, and one of the equal values is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

__all__ = ["cached_property"]

T = TypeVar("T")
_MISSING = object()


class cached_property(Generic[T]):  # noqa: N801 - named as functools' (a drop-in)
    """The value of ``func(instance)``, computed on first access and kept in the
    instance's ``__dict__`` (``del instance.name`` forgets it)."""

    def __init__(self, func: Callable[[Any], T]) -> None:
        self.func = func
        self.attrname: str | None = None
        self.__doc__ = func.__doc__
        self.__module__ = func.__module__

    def __set_name__(self, owner: type, name: str) -> None:
        if self.attrname is not None and name != self.attrname:
            raise TypeError(
                f"one cached_property cannot be two attributes ({self.attrname!r} and {name!r})"
            )
        self.attrname = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> cached_property[T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        if self.attrname is None:
            raise TypeError("cached_property used without __set_name__ (outside a class body)")
        store = instance.__dict__
        value = store.get(self.attrname, _MISSING)
        if value is _MISSING:
            value = self.func(instance)
            store[self.attrname] = value
        return value
