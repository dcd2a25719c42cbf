"""Conformal Cross-Modal Active Learning (CCMA).

Modules follow SPEC.md: ``features`` (stores), ``splits``, ``synth``, ``teacher``,
``student``, ``conformal``, ``scoring``, ``acquisition``, ``strategies``, ``loop``,
``record`` (the run record), ``metrics``, ``report`` and ``cli``.
"""

__version__ = "0.1.0"
