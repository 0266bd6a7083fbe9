"""The lock files say exactly what gets installed: every dependency pyproject.toml names is pinned in them (a
dependency added without `make lock` fails here), the runtime lock is the development lock's subset at the same
versions, and the Makefile installs from the lock."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;]+)")


def pins(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def declared(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = list(project["dependencies"])
    for extra in extras:
        names += project["optional-dependencies"][extra]
    return [Requirement(name) for name in names]


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    dev = pins(ROOT / "requirements-dev.lock")
    runtime = pins(ROOT / "requirements.lock")
    for lock, requirements in ((dev, declared("dev", "local", "bench")), (runtime, declared())):
        for requirement in requirements:
            name = canonicalize_name(requirement.name)
            assert name in lock, f"{requirement.name} is not in the lock file: run `make lock`"
            assert requirement.specifier.contains(lock[name], prereleases=True), (
                f"{requirement} but the lock pins {lock[name]}: run `make lock`"
            )


def test_the_runtime_lock_is_the_development_locks_subset_at_the_same_versions() -> None:
    dev = pins(ROOT / "requirements-dev.lock")
    runtime = pins(ROOT / "requirements.lock")
    assert runtime, "requirements.lock pins nothing"
    differing = {name: (version, dev.get(name)) for name, version in runtime.items() if dev.get(name) != version}
    assert not differing, differing


def test_make_installs_from_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "-r $(LOCK_DEV)" in makefile
    assert "LOCK_DEV   := requirements-dev.lock" in makefile
