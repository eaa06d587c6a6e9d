"""Test-time defenses behind one interface (see ``base``): a defended classifier from ``[0,1]``
images to logits around the model under attack.

    from tgazsr.defenses import DEFENSES, build_defended, make_defense_settings, DefenseContext

Registered here: ``none`` (the model itself), ``ttc`` (test-time counterattacks, as released) and
``random_noise`` (TTC's random-noise baseline). A new defense is one module calling
``register_defense``.
"""

from .base import (
    DEFENSES,
    GRADIENTS,
    THREAT_MODELS,
    DefendedClassifier,
    DefenseContext,
    DefenseSettingsError,
    DefenseSpec,
    build_defended,
    get_defense,
    make_defense_settings,
    register_defense,
    unregister_defense,
)
from .none import NoDefense, NoDefenseSettings
from .ttc import TTCDefense, TTCSettings, counterattack, step_weights
from .random_noise import RandomNoiseDefense, RandomNoiseSettings

__all__ = [
    "DEFENSES", "GRADIENTS", "THREAT_MODELS", "DefendedClassifier", "DefenseContext", "DefenseSettingsError",
    "DefenseSpec", "NoDefense", "NoDefenseSettings", "RandomNoiseDefense", "RandomNoiseSettings", "TTCDefense",
    "TTCSettings", "build_defended", "counterattack", "get_defense", "make_defense_settings", "register_defense",
    "step_weights", "unregister_defense",
]
