"""Start-up and shut-down costs of the ``python -m upo`` jobs: Python's cyclic garbage collector.

A job imports torch, transformers, alpaca_eval, lm-eval (~900k objects). While the heap grows the collector
runs a full collection at each 25 % of growth, every one walking the whole heap, and interpreter shutdown
walks it again; none of it finds much to free. On a pico run's ``upo evaluate`` (10.5 s before) that was
~1 s of collections during imports, ~1 s while textstat's pronouncing dictionary was built, and 1.7 s at
exit. The helpers here pause the collector where a job builds what lives to its end, and freeze that.
Nothing here changes a number a job computes.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
from collections.abc import Iterable, Iterator

# What loading a model folder imports (model and tokenizer classes), for :func:`libraries_outside_gc`.
TRANSFORMERS_MODULES = (
    "transformers.modeling_utils",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto",
)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collections inside (objects are still freed by reference counting)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def libraries_outside_gc(names: Iterable[str]) -> Iterator[None]:
    """Import ``names`` with the collector paused, then keep it off everything that exists, until exit.

    ``gc.freeze`` parks the imported modules (they live to the end of the job anyway; the ~12k unreachable
    objects importing leaves stay allocated until then); ``gc.unfreeze`` on exit hands them back, so an
    in-process caller (tests) is left as it was. A library that is not installed is skipped: the stage
    that needs it reports it.
    """
    with collector_paused():
        for name in names:
            with contextlib.suppress(ModuleNotFoundError):
                importlib.import_module(name)
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
