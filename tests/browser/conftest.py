"""Fixtures of the browser tests: Chromium through Playwright, one JupyterLab for the session, one run per notebook.

Without Chromium (or Playwright) the tests skip and say what to install; under ``CI=true`` they fail instead:
CI must never pass without having looked at the page.
"""

from __future__ import annotations

import shutil
import tempfile
import time

import pytest

from .browser_lab import CHROMIUM, CHROMIUM_FLAGS, INSTALL_CHROMIUM, NOTEBOOKS, OUTPUT, JupyterLab, NotebookRun, is_ci


def _unavailable(reason: str):
    if is_ci():
        pytest.fail(f"CI=true and the browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser_context():
    """A headless Chromium with a fresh profile (Debian's package: Playwright's own browsers are not used)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed: pip install -e '.[dev]'")
    if not CHROMIUM.exists():
        _unavailable(f"Chromium is not installed ({CHROMIUM} is missing): {INSTALL_CHROMIUM}")
    profile = tempfile.mkdtemp(prefix="ttlesson-chromium-")
    with sync_playwright() as playwright:
        try:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": 1280, "height": 900}, timeout=60_000)
        except Exception as err:  # a Chromium that is there but does not start
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            _unavailable(f"Chromium at {CHROMIUM} did not start ({first}); reinstall it: {INSTALL_CHROMIUM}")
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def lab(browser_context, tmp_path_factory):
    OUTPUT.mkdir(parents=True, exist_ok=True)
    server = JupyterLab(tmp_path_factory.mktemp("jupyterlab"), NOTEBOOKS, OUTPUT / "jupyterlab.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=[path.stem for path in NOTEBOOKS])
def ran(request, browser_context, lab):
    """The notebook ``request.param`` opened in JupyterLab and run top to bottom, once per session."""
    run = NotebookRun(browser_context, lab, request.param, OUTPUT)
    started = time.monotonic()
    run.open()
    opened = time.monotonic() - started
    run.run_all()
    with open(OUTPUT / "timings.txt", "a") as log:
        log.write(f"{request.param}: opened in {opened:.1f} s, ran in {run.seconds:.1f} s\n")
    yield run
    run.screenshot()
    run.close()
    lab.shutdown_kernels()
