"""Evaluation attacks behind one interface (see ``base``), and the PGD core the training uses.

    from tgazsr.attacks import ATTACKS, run_attack, make_settings, AttackContext

Registered here: ``pgd`` (L-inf, L2), ``cw`` (margin loss, L-inf) and ``autoattack``
(through ``pyautoattack``). A new attack is one module calling ``register_attack``.
"""

from .base import (
    ATTACKS,
    NORMS,
    AttackContext,
    AttackSpec,
    check_budget,
    get_attack,
    make_settings,
    register_attack,
    run_attack,
    settings_dict,
    unregister_attack,
)
from .pgd import PGDSettings, pgd, sample_generators
from .cw import CWSettings
from .autoattack import AUTOATTACK_ATTACKS, AUTOATTACK_VERSIONS, AutoAttackSettings, autoattack, autoattack_plan

__all__ = [
    "ATTACKS",
    "AUTOATTACK_ATTACKS",
    "AUTOATTACK_VERSIONS",
    "NORMS",
    "AttackContext",
    "AttackSpec",
    "AutoAttackSettings",
    "CWSettings",
    "PGDSettings",
    "autoattack",
    "autoattack_plan",
    "check_budget",
    "get_attack",
    "make_settings",
    "pgd",
    "register_attack",
    "run_attack",
    "sample_generators",
    "settings_dict",
    "unregister_attack",
]
