"""Query strategies: one small module each, declared by name in ``catalogue`` and listed in
``base.REGISTRY``; a strategy's module (and torch) is imported when its query first runs."""

from .base import REGISTRY, Param, QueryContext, Selection, Strategy, get_strategy, register

__all__ = ["REGISTRY", "Param", "QueryContext", "Selection", "Strategy", "get_strategy", "register"]
