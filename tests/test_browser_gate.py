"""The browser tests skip on a machine without Chromium, but under CI=true a missing or broken Chromium fails the run:
CI must never pass without having looked at the page."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BROWSER_TESTS = Path(__file__).parent / "browser"
pytest.importorskip("playwright")  # without it the browser tests name Playwright, not Chromium, as what is missing


def run_browser_tests(chromium: str, ci: bool) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env.update(TTLESSON_CHROMIUM=chromium, **({"CI": "true"} if ci else {}))
    return subprocess.run([sys.executable, "-m", "pytest", str(BROWSER_TESTS), "-q", "-rs", "-p", "no:cacheprovider",
                           "-p", "no:nbval", "-p", "no:hypothesispytest",
                           "-k", "test_no_hugging_face_token_on_screen and 01_"],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("chromium, why", [("/nonexistent/chromium", "Chromium is not installed"),
                                           ("/bin/false", "did not start")])
def test_without_a_working_chromium_the_browser_tests_skip_and_say_what_to_install(chromium, why):
    proc = run_browser_tests(chromium, ci=False)
    assert proc.returncode == 0 and "1 skipped" in proc.stdout, proc.stdout + proc.stderr
    assert why in proc.stdout and "sudo apt-get install -y chromium" in proc.stdout


@pytest.mark.parametrize("chromium", ["/nonexistent/chromium", "/bin/false"])
def test_under_ci_a_missing_or_broken_chromium_fails_the_run(chromium):
    proc = run_browser_tests(chromium, ci=True)
    assert proc.returncode != 0 and "1 error" in proc.stdout, proc.stdout + proc.stderr
    assert "CI=true and the browser tests cannot run" in proc.stdout
