"""A real Ray cluster of several nodes on this machine, and the render service on it, for the serve tests.

Loopback only: Ray binds every interface and names the node by the host's address unless the machine has no
other; so the tests first move this test process into a private network namespace of its own (Linux, root),
where loopback is the only interface. Everything the tests start (``ray start`` nodes, ``ttlesson serve``,
client renders) is a child and stays inside it; nothing leaves the machine.

Every process started here is stopped by its pid (each node's whole process tree), also when a test fails.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import ttlesson_command

CLONE_NEWNET = 0x40000000
HEAD_PORT = 6390
_private = False


def enter_private_network() -> None:
    """Move this process (and every child it starts from now on) into a network namespace with only loopback."""
    global _private
    if _private:
        return
    if hasattr(os, "unshare"):
        os.unshare(CLONE_NEWNET)
    elif ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) != 0:  # Python 3.10: no os.unshare
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    _private = True


def can_enter_private_network() -> str | None:
    """None when this process can enter a private network namespace; else why not."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux's"
    if os.geteuid() != 0:
        return "entering a private network namespace needs root (the tests keep Ray on loopback that way)"
    if subprocess.run(["ip", "-V"], capture_output=True).returncode != 0:
        return "the ip command (iproute2) is missing"
    return None


def short_folder() -> Path:
    """A fresh folder with a short path: Ray's Unix sockets live under its temp dir, and a socket's path is at most
    107 bytes (pytest's tmp_path is often longer)."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix="ttray-", dir="/tmp"))


def ray_environment(tmp: Path) -> dict:
    """Ray's settings for every process of a test cluster: no usage reports, token auth with a token of its own
    (nothing written to ~/.ray), torch's idle threads asleep."""
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(16), "OMP_WAIT_POLICY": "PASSIVE",
            "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "TMPDIR": str(tmp)}


class Process:
    """A child process started in a session of its own, stopped with every process under it."""

    def __init__(self, args: list[str], log: Path, env: dict):
        self.log = log
        self.handle = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.handle.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, words: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while words not in self.text():
            if self.handle.poll() is not None:
                raise AssertionError(f"{self.handle.args[:3]} ended ({self.handle.returncode}):\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {words!r} in {timeout} s:\n{self.text()}")
            time.sleep(0.2)

    def tree(self) -> list[int]:
        return [self.pid, *descendants(self.pid)]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """``sig`` to the process and everything under it (Ray daemonizes nothing with ``--block``)."""
        for pid in self.tree():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 30) -> None:
        if self.handle.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self.handle.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill(signal.SIGKILL)
        self.handle.wait()


class Cluster:
    """``ray start --head`` and ``ray start --address`` nodes, each with its own resources, run with ``--block``
    so each node is one process tree this test owns."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.env = ray_environment(tmp)
        self.nodes: list[Process] = []
        self.address = f"127.0.0.1:{HEAD_PORT}"
        self.ray_folder = short_folder()

    def add_node(self, cpus: int = 1, resources: str | None = None) -> Process:
        ray = str(Path(sys.executable).with_name("ray"))
        number = len(self.nodes)
        args = [ray, "start", "--block", "--num-cpus", str(cpus), "--node-ip-address", "127.0.0.1",
                "--disable-usage-stats"]
        if number == 0:
            args += ["--head", "--port", str(HEAD_PORT), "--include-dashboard", "false",
                     "--temp-dir", str(self.ray_folder)]
        else:
            args += ["--address", self.address]
        if resources:
            args += ["--resources", resources]
        node = Process(args, self.tmp / f"node{number}.log", self.env)
        self.nodes.append(node)
        node.wait_for("Ray runtime started" if number == 0 else "Ray runtime started", timeout=120)
        return node

    def stop(self) -> None:
        """Every node's whole process tree, SIGKILLed: a test cluster keeps nothing worth a graceful stop."""
        import shutil

        for node in reversed(self.nodes):
            node.kill()
            node.handle.wait()
        shutil.rmtree(self.ray_folder, ignore_errors=True)


def start_service(cluster: Cluster, port: int, *args: str, name: str = "serve") -> Process:
    service = Process([*ttlesson_command(), "serve", "--address", cluster.address, "--port", str(port), *args],
                      cluster.tmp / f"{name}-{time.monotonic_ns()}.log", cluster.env)
    try:
        service.wait_for("listening at", timeout=180)
    except BaseException:
        service.stop()  # it never became the caller's to stop
        raise
    return service


def descendants(pid: int) -> list[int]:
    """Every process under ``pid``, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
