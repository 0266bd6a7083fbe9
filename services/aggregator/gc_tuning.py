"""The aggregator's processes (the service and each rebuild process) collect cyclic garbage rarely."""

from __future__ import annotations

import gc

GC_THRESHOLD = (50_000, 50, 100)
"""A batch allocates hundreds of thousands of short-lived, acyclic objects (refs, totals, states, rows): with
Python's default threshold (700) the cyclic collector runs thousands of times a batch and took half of its Python
time. Collected less often, the same garbage goes by reference counting anyway."""


def tune_gc() -> None:
    gc.freeze()  # what startup made lives as long as the process: never scanned again
    gc.set_threshold(*GC_THRESHOLD)
