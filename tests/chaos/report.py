"""The run's table (printed, and written into RESULTS.md between markers) and a JSON summary."""

from __future__ import annotations

import json
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.chaos.runner import ScenarioRun
from tests.chaos.verdict import VIOLATIONS


@dataclass
class Machine:
    cpus: int
    ram_gib: float
    system: str
    postgres: str
    tansu: str

    @staticmethod
    def describe(versions: dict[str, str]) -> Machine:
        ram = 0.0
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    ram = int(line.split()[1]) / 1024 / 1024
        except OSError:
            pass
        return Machine(
            cpus=os.cpu_count() or 0,
            ram_gib=round(ram, 1),
            system=f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
            postgres=versions.get("postgres", "?"),
            tansu=versions.get("tansu", "?"),
        )


def _secs(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def _others(run: ScenarioRun) -> str:
    main = {"wrong", "lost", "procore_duplicates"}
    parts = [f"{name} {n}" for name, n in run.tally.counts.items() if n and name not in main]
    return ", ".join(parts) or "-"


def table(runs: list[ScenarioRun]) -> str:
    head = (
        "| scenario | events | timelogs/s | entries checked | wrong | lost | duplicates in Procore | dead-lettered "
        "(poison / all) | time to recover | final publish settled | other violations | verdict |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n"
    )
    rows = []
    for r in runs:
        c = r.tally.counts
        poison = f"{r.poison_dead_lettered}/{len(r.poison)}" if r.poison else "-"
        rows.append(
            f"| {r.name} | {r.events:,} | {r.timelog_messages / max(r.load_seconds, 1e-9):,.0f} | "
            f"{r.entries_checked:,} | {c['wrong']} | {c['lost']} | "
            f"{c['procore_duplicates']} | {poison} / {r.dead_letters:,} | {_secs(r.recover_s)} | "
            f"{_secs(r.publish_settle_s)} | {_others(r)} | {'PASS' if r.tally.violations == 0 else 'FAIL'} |"
        )
    return head + "\n".join(rows) + "\n"


def details(runs: list[ScenarioRun]) -> str:
    out = []
    for r in runs:
        lines = [f"**{r.name}** ({r.duration_s:.0f} s)"]
        for name, n in r.tally.counts.items():
            if n:
                lines.append(f"- {name} = {n} ({VIOLATIONS[name]}), e.g.:")
                lines += [f"  - `{e[:300]}`" for e in r.tally.examples[name]]
        lines += [f"- note: {n[:300]}" for n in dict.fromkeys(r.tally.notes)][:12]
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def storage(runs: list[ScenarioRun]) -> str:
    on_s3 = [r.name for r in runs if r.storage == "s3"]
    if not on_s3:
        return "memory:// storage"
    if len(on_s3) == len(runs):
        return "s3:// storage on moto"
    return f"s3:// storage on moto for {', '.join(on_s3)}, memory:// for the others"


def section(form: str, command: str, machine: Machine, runs: list[ScenarioRun], extra: list[str]) -> str:
    return (
        f"### {form} form — {extra[0]}\n\n"
        f"Command: `{command}`  \n"
        f"Machine: {machine.cpus} CPUs, {machine.ram_gib} GiB RAM, {machine.system}; "
        f"{machine.postgres} (embedded); {machine.tansu} ({storage(runs)})  \n"
        + "  \n".join(extra[1:])
        + "\n\n"
        + table(runs)
        + "\n<details><summary>What failed, with examples</summary>\n\n"
        + details(runs)
        + "\n</details>\n"
    )


def write_results(path: Path, form: str, text: str) -> None:
    """Replace this form's block in RESULTS.md (kept between markers), leaving the rest as written."""
    start, end = f"<!-- chaos:{form}:start -->", f"<!-- chaos:{form}:end -->"
    block = f"{start}\n{text}{end}"
    current = path.read_text() if path.exists() else "# Chaos suite results\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    updated = pattern.sub(lambda _m: block, current) if pattern.search(current) else f"{current.rstrip()}\n\n{block}\n"
    path.write_text(updated)


def summary(runs: list[ScenarioRun]) -> dict[str, Any]:
    return {
        r.name: {
            "passed": r.tally.violations == 0,
            "violations": {k: v for k, v in r.tally.counts.items() if v},
            "examples": {k: v for k, v in r.tally.examples.items() if v},
            "notes": r.tally.notes[:20],
            "recover_s": r.recover_s,
            "events": r.events,
            "entries_checked": r.entries_checked,
        }
        for r in runs
    }


def write_summary(path: Path, runs: list[ScenarioRun], total_s: float) -> None:
    path.write_text(json.dumps({"total_s": total_s, "scenarios": summary(runs)}, indent=2, default=str))
