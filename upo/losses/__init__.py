"""Registry of pure losses. Importing this package registers every loss module.

One name per concept: ``beta`` is the KL-regularisation strength (DPO, IPO, PPO's KL penalty);
``label_smoothing`` is cDPO's epsilon; ``aux_weight`` is UPO's lambda; ``tau`` the expectile;
``eta`` the advantage temperature.
"""

from upo.losses.base import LOSSES, LossInputs, LossOutput, LossSpec, get_loss, register_loss

__all__ = ["LOSSES", "LossInputs", "LossOutput", "LossSpec", "available", "get_loss", "register_loss"]


def available() -> list[str]:
    return LOSSES.available()
