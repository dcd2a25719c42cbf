"""Conformal Cross-Modal Active Learning (CCMA).

One module per concept: ``features`` (stores), ``splits``, ``synth``, ``teacher``,
``student``, ``conformal``, ``scoring``, ``acquisition``, ``strategies``, ``loop``,
``record`` (the run record), ``metrics``, ``report`` and ``cli``.
"""

import os

# MKL, torch's CPU BLAS, splits the inner sums of some products across threads, so their
# roundings (and near ties downstream) change with the thread count; its strict reproducible
# mode keeps one order. MKL reads this once, at its first product: set before any ccma code
# runs one. A user's own setting wins.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"
