"""Training methods, one definition each, and their registry.

    from tgazsr.methods import METHODS, get_method, register_method

Registered in the order of the paper's table: FT-Clean, FT-Adv., TeCoA, PMG-AFT, FARE,
Vision-based, TGA-ZSR, Comp-TGA, then AGFT.
"""

from .base import (
    METHODS,
    LossOutput,
    Method,
    MethodConfig,
    Paper,
    StepView,
    get_method,
    register_method,
    unregister_method,
)
from . import finetune, tecoa, pmg_aft, fare, attention_guided, agft  # noqa: E402,F401  (registration, table order)

# The table's order, whatever the import order above.
_ORDER = ("ft_clean", "ft_adv", "tecoa", "pmg_aft", "fare", "vision_attention", "tga_zsr", "comp_tga", "agft")
METHODS.order(_ORDER)

#: ``--method`` when a recipe names none: the paper's method.
DEFAULT_METHOD = "tga_zsr"

from .fields import method_arguments, method_config  # noqa: E402

__all__ = ["DEFAULT_METHOD", "METHODS", "LossOutput", "Method", "MethodConfig", "Paper", "StepView", "get_method",
           "method_arguments", "method_config", "register_method", "unregister_method"]
