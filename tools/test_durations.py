"""Where the test suite's time goes: a Markdown report from pytest's JUnit XML (``make test`` writes both).

    python tools/test_durations.py test-output/junit.xml [--top 50] [--out test-output/durations.md]

Each test's time is pytest's (setup, call and teardown together), summed per file and per kind:

- notebooks: nbval executing a notebook's cells;
- browser: a notebook run in JupyterLab in Chromium and checked on screen (tests/browser);
- kills and signals: a real process stopped by SIGKILL, SIGTERM or Ctrl-C on purpose;
- training: the offline model's training recipe;
- child interpreters: tests that start ``ttlesson`` or ``python`` processes (counted by tests/conftest.py);
- in-process: everything else.

The sum is work, not wall time: ``make test`` runs it on two workers, and its wall time is printed by pytest.
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

KILLS = re.compile(r"kill|sigterm|sigint|signal|ctrl_c|interrupt", re.I)
TRAINING = re.compile(r"train", re.I)
KINDS = ["notebooks", "browser", "kills and signals", "training", "child interpreters", "in-process"]


@dataclass(frozen=True)
class Case:
    file: str
    name: str
    seconds: float
    interpreters: int
    outcome: str

    @property
    def kind(self) -> str:
        if self.file.endswith(".ipynb"):
            return "notebooks"
        if self.file.startswith("tests/browser/"):
            return "browser"
        if KILLS.search(self.name):
            return "kills and signals"
        if TRAINING.search(self.name):
            return "training"
        return "child interpreters" if self.interpreters else "in-process"


def read_cases(junit: Path) -> list[Case]:
    cases = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        classname = case.get("classname", "")
        if classname.startswith("notebooks."):  # nbval: notebooks.04_generate_frames.ipynb, "Cell 2"
            file = "notebooks/" + classname.removeprefix("notebooks.")
        else:
            parts = classname.split(".")  # tests.test_cli, or tests.test_cli.TestSomething for a class
            file = "/".join(parts[:-1] if parts[-1][:1].isupper() else parts) + ".py"
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        cases.append(Case(file=file, name=case.get("name", ""), seconds=float(case.get("time") or 0),
                          interpreters=int(properties.get("interpreters") or 0), outcome=outcome))
    return cases


def report(cases: list[Case], top: int) -> str:
    total = sum(case.seconds for case in cases)
    outcomes = defaultdict(int)
    for case in cases:
        outcomes[case.outcome] += 1
    lines = [f"{len(cases)} tests ({', '.join(f'{n} {o}' for o, n in sorted(outcomes.items()))}), "
             f"{total:.0f} s of test time in all (work summed over the workers, not wall time).", ""]
    lines += _table("kind", _sums(cases, lambda case: case.kind, order=KINDS), total)
    lines += _table("file", _sums(cases, lambda case: case.file), total)
    lines += ["| seconds | kind | test |", "| ---: | --- | --- |"]
    for case in sorted(cases, key=lambda case: -case.seconds)[:top]:
        lines.append(f"| {case.seconds:.1f} | {case.kind} | `{case.file}::{case.name}` |")
    return "\n".join(lines) + "\n"


def _sums(cases, key, order=None) -> list[tuple[str, int, float, int]]:
    sums: dict[str, list] = defaultdict(lambda: [0, 0.0, 0])
    for case in cases:
        entry = sums[key(case)]
        entry[0] += 1
        entry[1] += case.seconds
        entry[2] += case.interpreters
    names = [name for name in order if name in sums] if order else sorted(sums, key=lambda n: -sums[n][1])
    return [(name, *sums[name]) for name in names]


def _table(what: str, rows, total: float) -> list[str]:
    lines = [f"| {what} | tests | seconds | share | interpreters started |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, count, seconds, interpreters in rows:
        lines.append(f"| {name} | {count} | {seconds:.1f} | {seconds / total:.0%} | {interpreters} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("junit", type=Path, help="pytest's --junitxml file")
    parser.add_argument("--top", type=int, default=50, help="how many of the slowest tests to list (default: 50)")
    parser.add_argument("--out", type=Path, default=None, help="write the report here as well as printing it")
    args = parser.parse_args(argv)
    if not args.junit.is_file():
        print(f"{args.junit} does not exist: run the tests with --junitxml={args.junit} first", file=sys.stderr)
        return 2
    text = report(read_cases(args.junit), args.top)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
