"""Collecting cyclic garbage rarely, in services whose work allocates many short-lived objects: each process
freezes what its startup made (it lives as long as the process: never scanned again) and raises the collector's
thresholds. The garbage still goes, by reference counting; only cycles wait for the (rarer) collections."""

from __future__ import annotations

import gc


def tune_gc(threshold: tuple[int, int, int]) -> None:
    """Freeze what exists now and collect with `threshold` (`gc.set_threshold`'s three generations) from now on."""
    gc.freeze()
    gc.set_threshold(*threshold)
