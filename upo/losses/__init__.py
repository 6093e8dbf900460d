"""Registry of pure losses. Importing this package registers every loss module.

One name per concept across the codebase:

=================  ==========================================================================
``beta``           KL-regularisation strength (DPO, IPO where it plays tau's role, PPO's KL)
``label_smoothing``  cDPO's epsilon (probability a label is flipped)
``aux_weight``     UPO's lambda, the weight of the auxiliary term (``w~`` in run paths)
``tau``            expectile of UPO's value regression
``eta``            temperature of UPO's advantage weights
=================  ==========================================================================
"""

from upo.losses import dpo, dpo_nll, ppo, relabel, reward, sft  # noqa: F401  (registration)
from upo.losses import upo as upo_objective  # noqa: F401
from upo.losses.base import LOSSES, LossInputs, LossOutput, LossSpec, get_loss, register_loss

__all__ = ["LOSSES", "LossInputs", "LossOutput", "LossSpec", "available", "get_loss", "register_loss"]


def available() -> list[str]:
    return LOSSES.available()
