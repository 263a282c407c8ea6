"""pyproject.toml is the one list of dependencies; environment.yml, the README and CI agree with it."""

import re
import subprocess
import sys
from importlib.metadata import entry_points, version
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (tt-metal's python_env): the same parser, from PyPI
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# What tt-metal's own python_env pins: installing ttlesson there must not upgrade any of it.
TT_METAL_PINS = {"torch": "2.11.0", "diffusers": "0.35.2", "transformers": "4.53.0"}


def requirements(extra: str | None = None) -> dict[str, Requirement]:
    listed = PYPROJECT["dependencies"] if extra is None else PYPROJECT["optional-dependencies"][extra]
    return {Requirement(line).name.lower(): Requirement(line) for line in listed}


def all_requirement_names() -> set[str]:
    names = set(requirements())
    for extra in PYPROJECT["optional-dependencies"]:
        names |= set(requirements(extra))
    return names


def test_ranges_admit_tt_metal_pins_and_what_is_installed():
    base = requirements()
    for name, pinned in TT_METAL_PINS.items():
        assert base[name].specifier.contains(pinned), f"{name} {base[name].specifier} refuses tt-metal's {pinned}"
    for name, requirement in base.items():
        assert requirement.specifier.contains(version(name), prereleases=True), (name, version(name))


def test_environment_yml_agrees_with_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.12" in conda and "ffmpeg" in conda and "pip" in conda
    pip_lines = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    installs = [line for line in pip_lines if line.startswith("-e")]
    assert len(installs) == 1
    extras = set(re.search(r"\[(.*)\]", installs[0]).group(1).split(","))
    assert extras == set(PYPROJECT["optional-dependencies"]) - {"tt"}
    # Anything else named in environment.yml must be a dependency pyproject declares, and nothing more.
    others = [re.split(r"[=<>! ]", d)[0].lower() for d in conda if not d.startswith(("python", "ffmpeg", "pip"))]
    others += [Requirement(line).name.lower() for line in pip_lines if not line.startswith("-")]
    assert set(others) <= all_requirement_names()


def test_console_script_and_python_support():
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "ttlesson"]
    assert script.value == "ttlesson.cli:main"
    assert PYPROJECT["requires-python"] == ">=3.10,<3.13"
    assert (ROOT / ".python-version").read_text().strip() == "3.12"


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(make \w+)\s+# .*test", readme, re.M)
    assert commands == ["make test"]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[-1] == "make test"


def test_bundled_storyboards_are_package_data():
    assert "storyboards/*.json" in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["ttlesson"]


@pytest.mark.parametrize("code", ["import ttlesson", "import ttlesson.cli; ttlesson.cli.build_parser()"])
def test_light_imports_do_not_load_torch(code):
    probe = f"{code}; import sys; print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
