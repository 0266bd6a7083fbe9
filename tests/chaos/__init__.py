"""The chaos suite: the real system as processes, generated MobiClocks load, faults, and an independent oracle.

`python -m tests.chaos --short` (inside `make test`) or `--long` (`make chaos`); see tests/chaos/README.md.
"""
