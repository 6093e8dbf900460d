"""Registry of pure losses. Every module of this package is imported on first use (``pkgutil``), so a
new loss is one file here with a ``@register_loss`` function: no import list to extend.

One name per concept across the codebase:

=================  ==========================================================================
``beta``           KL-regularisation strength (DPO, IPO where it plays tau's role, PPO's KL)
``label_smoothing``  cDPO's epsilon (probability a label is flipped)
``aux_weight``     UPO's lambda, the weight of the auxiliary term (``w~`` in run paths)
``tau``            expectile of UPO's value regression
``eta``            temperature of UPO's advantage weights
=================  ==========================================================================
"""

from __future__ import annotations

import importlib
import pkgutil

from upo.losses.base import LOSSES, LossInputs, LossOutput, LossSpec, get_loss, register_loss

__all__ = ["LOSSES", "LossInputs", "LossOutput", "LossSpec", "available", "discover", "get_loss", "register_loss"]


def discover() -> list[str]:
    """Import every module of ``upo.losses`` (registering its losses); returns the module names.

    Modules whose name starts with ``_`` are skipped. Safe to call again: a module already imported
    is not re-executed, and a file added since the last call is picked up.
    """
    importlib.invalidate_caches()
    names = []
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
            names.append(module.name)
    return names


def available() -> list[str]:
    return LOSSES.available()


discover()
