"""A real JupyterLab, a real Chromium, and a notebook run the way a learner runs it: open, Run All, look.

``JupyterLab`` starts ``jupyter lab`` on 127.0.0.1 with a random token, in temporary folders (notebooks copied
there, a work folder, its own settings and runtime dirs), so the repository's notebooks are never saved over and
nothing of the user's Jupyter set-up is used. ``NotebookRun`` opens one notebook in a Chromium page, runs all its
cells from the Run menu, waits for the kernel to go idle, and reads what the page shows.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
OUTPUT = Path(os.environ.get("TTLESSON_TEST_OUTPUT") or REPO / "test-output") / "browser"
CHROMIUM = Path(os.environ.get("TTLESSON_CHROMIUM", "/usr/bin/chromium"))
INSTALL_CHROMIUM = "sudo apt-get install -y chromium"
# Headless, and no traffic of Chromium's own: no component updates, sync, field trials or QUIC probes.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic", "--disable-default-apps",
                  "--disable-breakpad", "--metrics-recording-only", "--mute-audio"]
FAKE_HF_TOKEN = "hf_" + "ScreenCheckToken" + "0123456789abcdefgh"  # the page must show it masked, never whole
VIEWPORT = {"width": 1280, "height": 900}
FIRST_SCREEN = {"width": 1280, "height": 800}  # a laptop's window: what a learner sees before scrolling

# JupyterLab settings for a test run: every cell in the DOM (no windowing), the kernel starts without asking,
# and no news or update checks (no network).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none",
                                                                  "autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
}


def is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JupyterLab:
    """``jupyter lab`` serving copies of the notebooks, with the offline tiny model and a fresh work folder."""

    def __init__(self, root: Path, notebooks: list[Path], log: Path, extra_env: dict | None = None):
        self.root = root
        self.extra_env = dict(extra_env or {})  # e.g. TTLESSON_SERVER: what a learner sets before starting it
        self.notebooks = root / "notebooks"
        self.workdir = root / "work"
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.log = log
        self.process: subprocess.Popen | None = None
        self.notebooks.mkdir(parents=True)
        self.workdir.mkdir()
        for path in notebooks:
            shutil.copy(path, self.notebooks / path.name)
        for name, values in LAB_SETTINGS.items():
            target = root / "lab-settings" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("TTLESSON_", "JUPYTER", "TT_METAL_MOCK"))}
        cache = os.environ.get("TTLESSON_CACHE")  # the tiny model the test session already built
        env.update(
            TTLESSON_MODEL="tiny", TTLESSON_BACKEND="auto", TTLESSON_WORKDIR=str(self.workdir),
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            JUPYTER_CONFIG_DIR=str(self.root / "config"), JUPYTER_DATA_DIR=str(self.root / "data"),
            JUPYTER_RUNTIME_DIR=str(self.root / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(self.root / "lab-settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(self.root / "workspaces"), JUPYTER_PLATFORM_DIRS="1",
            HF_HUB_OFFLINE="1", HF_TOKEN=FAKE_HF_TOKEN, HF_HUB_DISABLE_TELEMETRY="1",
        )
        if cache:
            env["TTLESSON_CACHE"] = cache
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 120) -> None:
        command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
                   f"--ServerApp.token={self.token}", f"--ServerApp.root_dir={self.notebooks}",
                   "--ServerApp.port_retries=0", "--LabApp.news_url=None",
                   "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.environment(), cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"jupyter lab did not answer within {timeout:g} s: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def shutdown_kernels(self) -> None:
        """Stop every running kernel (each notebook's kernel holds a model)."""
        for kernel in self._api("GET", "/api/kernels") or []:
            self._api("DELETE", f"/api/kernels/{kernel['id']}")

    def _api(self, method: str, path: str):
        request = urllib.request.Request(f"{self.url}{path}?token={self.token}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                body = answer.read()
        except OSError:
            return None
        return json.loads(body) if body else None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # the server and the kernels it started
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass(frozen=True)
class Output:
    """One output of a cell as the page shows it."""

    cell: int  # the code cell's position among code cells
    mime: str
    text: str


# Run in the page: every code cell's prompt and outputs, as the learner sees them.
_READ_OUTPUTS = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')].map(cell => ({
    prompt: (cell.querySelector('.jp-InputPrompt') || {textContent: ''}).textContent.trim(),
    hidden: !cell.querySelector('.jp-InputArea'),
    outputs: [...cell.querySelectorAll('.jp-OutputArea-output')].map(o => ({
        mime: o.dataset.mimeType || '', text: o.innerText}))}))"""

_BUSY = """() => [...document.querySelectorAll('.jp-Notebook .jp-InputPrompt')]
    .some(p => p.textContent.includes('*'))"""


# Run in the page: what of the notebook's outputs lies inside the window.
_IN_VIEW = """() => { const seen = e => { const r = e.getBoundingClientRect();
        return r.width > 0 && r.height > 0 && r.top < window.innerHeight && r.bottom > 0; };
    const all = s => [...document.querySelectorAll(s)].filter(seen);
    return {pictures: all('.jp-OutputArea-output img, .jp-OutputArea-output video').length,
            text: all('.jp-OutputArea-output').map(o => o.innerText).join('\\n'),
            tables: all('.jp-OutputArea-output table').map(t => t.innerText)}; }"""


class NotebookRun:
    """One notebook opened in JupyterLab and run top to bottom, with what the page then shows."""

    def __init__(self, context, lab: JupyterLab, name: str, shots: Path):
        self.lab, self.name, self.shots = lab, name, shots
        self.page = context.new_page()
        self.page.set_viewport_size(VIEWPORT)
        self.console: list[str] = []
        self.page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        self.page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))
        self.seconds = 0.0

    def open(self, timeout: float = 120_000) -> None:
        # A workspace of its own, reset: only this notebook is open, whatever ran before.
        workspace = re.sub(r"\W", "", self.name)
        self.page.goto(f"{self.lab.url}/lab/workspaces/{workspace}/tree/{self.name}.ipynb?reset&token={self.lab.token}")
        self.page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout)
        # The status bar says "Python 3 (ipykernel) | Idle" once the kernel has started and is connected.
        self.page.wait_for_function("""() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]
            .some(item => /\\| Idle$/.test(item.textContent.trim()))""", timeout=timeout)
        self._hide_file_browser()

    def _hide_file_browser(self) -> None:
        current = self.page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
        if current.count():
            current.first.click()

    def run_all(self, timeout: float = 600_000) -> None:
        """Run > Run All Cells, then wait until no cell is queued or running and the kernel is idle."""
        started = time.monotonic()
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        try:  # each cell shows [*] as soon as it is queued
            self.page.wait_for_function(_BUSY, timeout=15_000)
        except Exception:
            pass  # a notebook fast enough to finish before the first look
        self.page.wait_for_function(f"""() => !({_BUSY})() && document.querySelector(
            '.jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle'""", timeout=timeout, polling=250)
        self.page.wait_for_timeout(1000)  # widget views and images finish rendering
        self.seconds = time.monotonic() - started

    def cells(self) -> list[dict]:
        return self.page.evaluate(_READ_OUTPUTS)

    def outputs(self) -> list[Output]:
        return [Output(number, output["mime"], output["text"])
                for number, cell in enumerate(self.cells()) for output in cell["outputs"]]

    def text(self) -> str:
        return self.page.locator(".jp-Notebook").inner_text()

    def first_screen(self) -> dict:
        """What the learner sees first after Run All (the notebook scrolled to its top, the window VIEWPORT): the
        pictures and videos in view, the text of the outputs in view, and that screen saved as
        ``<notebook>-first.png``."""
        self.page.set_viewport_size(FIRST_SCREEN)
        self.page.evaluate("() => { const o = document.querySelector('.jp-WindowedPanel-outer'); "
                           "if (o) o.scrollTop = 0; }")
        self.page.wait_for_timeout(300)
        self.shots.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(self.shots / f"{self.name}-first.png"))
        seen = self.page.evaluate(_IN_VIEW)
        self.page.set_viewport_size(VIEWPORT)
        return seen

    def screenshot(self) -> Path:
        """The whole notebook in one image: the window is made as tall as the notebook, scrolled to its top, and
        the picture ends below its last cell."""
        height = self.page.evaluate("""() => { const o = document.querySelector('.jp-WindowedPanel-outer');
            return o ? o.scrollHeight : document.body.scrollHeight; }""")
        chrome = VIEWPORT["height"] - self.page.evaluate(
            "() => document.querySelector('.jp-WindowedPanel-outer')?.clientHeight || 0")
        self.page.set_viewport_size({"width": VIEWPORT["width"], "height": min(height + chrome, 16000)})
        self.page.evaluate("() => { const o = document.querySelector('.jp-WindowedPanel-outer'); "
                           "if (o) o.scrollTop = 0; }")
        self.page.wait_for_timeout(500)
        bottom = self.page.evaluate("""() => { const cells = document.querySelectorAll('.jp-Notebook .jp-Cell');
            return cells.length ? cells[cells.length - 1].getBoundingClientRect().bottom : 0; }""")
        size = self.page.viewport_size
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{self.name}.png"
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], bottom + 24)} if bottom else None
        self.page.screenshot(path=str(path), clip=clip)
        self.page.set_viewport_size(VIEWPORT)
        return path

    def close(self) -> None:
        self.page.close()
