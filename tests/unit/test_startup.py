"""upo.startup: the collector is paused and frozen only inside, and left as it was after."""

from __future__ import annotations

import gc
import sys

import pytest

from upo.startup import collector_paused, libraries_outside_gc


@pytest.mark.parametrize("enabled_before", [True, False])
def test_collector_paused_restores_the_state(enabled_before):
    was = gc.isenabled()
    try:
        gc.enable() if enabled_before else gc.disable()
        with collector_paused():
            assert not gc.isenabled()
        assert gc.isenabled() is enabled_before
    finally:
        gc.enable() if was else gc.disable()


def test_libraries_outside_gc_imports_freezes_and_unfreezes():
    frozen_before = gc.get_freeze_count()
    sys.modules.pop("colorsys", None)  # a small stdlib module, imported afresh
    with libraries_outside_gc(["colorsys", "no_such_module_upo_test"]):
        assert "colorsys" in sys.modules
        assert gc.isenabled()
        assert gc.get_freeze_count() > frozen_before
    assert gc.get_freeze_count() == frozen_before == 0


def test_libraries_outside_gc_unfreezes_on_error():
    with pytest.raises(RuntimeError, match="boom"), libraries_outside_gc([]):
        raise RuntimeError("boom")
    assert gc.get_freeze_count() == 0 and gc.isenabled()
