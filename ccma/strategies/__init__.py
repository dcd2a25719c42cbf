"""Query strategies: one small module each, registered by name in ``base.REGISTRY``."""

from importlib import import_module

from .base import REGISTRY, Param, QueryContext, Selection, Strategy, get_strategy, register

# Modules register themselves on import; the list is the registry's table of contents.
STRATEGY_MODULES = ["random", "ccma", "uncertainty", "entropy", "margins", "bald", "powerbald",
                     "badge", "alfamix", "coreset", "typiclust", "probcover", "uherding"]

for _name in STRATEGY_MODULES:
    import_module(f"{__name__}.{_name}")

__all__ = ["REGISTRY", "Param", "QueryContext", "Selection", "Strategy", "get_strategy", "register"]
