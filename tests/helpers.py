"""What many tests share: running the ``ttlesson`` command as a user would, and reading its one-line errors.

``run_cli`` starts the installed console script in a child process: for exit codes under signals, the script
itself, closed pipes and whole renders. ``call_cli`` runs the same ``main`` in this process with captured output:
for refusals and help texts, where a fresh interpreter adds seconds and checks nothing more.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

MOCK_ENV = "TT_METAL_MOCK_CLUSTER_DESC_PATH"


def ttlesson_command() -> list[str]:
    """The installed ``ttlesson`` console script next to this Python (else ``python -m ttlesson.cli``)."""
    script = Path(sys.executable).with_name("ttlesson")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ttlesson.cli"]


def run_cli(*args, env: dict | None = None, timeout: float = 900, base: dict | None = None
            ) -> subprocess.CompletedProcess:
    """Run ``ttlesson ARGS`` in a child process with this environment (or ``base``) plus ``env``."""
    return subprocess.run([*ttlesson_command(), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**(os.environ if base is None else base), **(env or {})}, stdin=subprocess.DEVNULL)


def call_cli(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``ttlesson ARGS`` through ``ttlesson.cli.main`` in this process, with ``env`` added to the environment
    for the call, and return what a child process would: the exit status, stdout and stderr.

    Not for settings read once per process (``HF_HOME`` and the rest of huggingface_hub's constants): use
    ``run_cli`` for those.
    """
    from ttlesson.cli import main

    out, err = io.StringIO(), io.StringIO()
    with _environment(env), warnings.catch_warnings(), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        try:
            status = main([str(arg) for arg in args])
        except SystemExit as stop:  # argparse: --help, --version and usage errors
            status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    return subprocess.CompletedProcess(["ttlesson", *map(str, args)], status, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _environment(changes: dict | None):
    saved = dict(os.environ)
    os.environ.update({key: str(value) for key, value in (changes or {}).items()})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_ttlesson(*args, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``ttlesson ARGS`` like ``run_cli``, but without a mock cluster unless ``env`` names one (detection)."""
    return run_cli(*args, env=env, timeout=timeout,
                   base={key: value for key, value in os.environ.items() if key != MOCK_ENV})


def run_json(*args, env: dict | None = None, timeout: float = 120) -> dict:
    proc = run_ttlesson(*args, "--json", env=env, timeout=timeout)
    assert proc.returncode in (0, 1), (proc.returncode, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """Assert the CLI failed the way bad input must fail, and return its message."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]
