"""Hugging Face auth on huggingface_hub's real client: the token is never printed, whoami against a local
stand-in for the Hub, model access from a cache built here."""

from __future__ import annotations

import io
import json
import secrets
import string
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import run_ttlesson

from ttlesson.errors import HubAuthError
from ttlesson.setup import hf


@pytest.fixture
def hf_home(tmp_path):
    """A Hugging Face home of its own (no stored login, empty cache), for child processes."""
    return {"HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1", "HF_TOKEN": "",
            "HUGGING_FACE_HUB_TOKEN": "", "HF_HUB_OFFLINE": "", "TRANSFORMERS_OFFLINE": ""}


def _token() -> str:
    return "hf_" + "".join(secrets.choice(string.ascii_letters) for _ in range(34))


def _leaks(text: str, token: str) -> list[str]:
    """Pieces of the token's secret part (8 characters or more) that appear in ``text``."""
    secret = token[3:]
    return [secret[i:i + 8] for i in range(len(secret) - 7) if secret[i:i + 8] in text]


def test_mask():
    token = "hf_" + "a" * 30 + "wxyz"
    assert hf.mask(token) == "hf_…wxyz"
    assert hf.mask("hf_short") == "hf_…" and hf.mask("abcdefghijklmnopqrstuvwxyz") == "…wxyz"
    assert hf.scrub(f"bad token {token}!", token) == "bad token hf_…wxyz!"


@pytest.fixture
def hub():
    """A local stand-in for the Hub's /api/whoami-v2: 200 for the token in ``hub.good``, else 401."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            known = self.headers.get("authorization") == f"Bearer {server.good}"
            body = {"name": "learner", "orgs": [{"name": "tenstorrent"}]} if known else {"error": "Invalid token"}
            data = json.dumps(body).encode()
            self.send_response(200 if known else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    # Threaded: a client that opens a second connection (or keeps one idle) must not stall the one being served
    # (a single-threaded server held the suite for 30 s under load, then 30 s more in shutdown).
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.good = _token()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.mark.slow
def test_token_never_appears_in_any_output(hf_home, hub):
    token = _token()
    env = {**hf_home, "HF_TOKEN": token, "HF_ENDPOINT": f"http://127.0.0.1:{hub.server_port}"}
    runs = {args: run_ttlesson(*args, env=env) for args in [
        ("auth", "status"), ("auth", "status", "--json"), ("auth", "whoami"), ("doctor",), ("doctor", "--json"),
        ("detect",), ("detect", "--json"), ("auth", "login")]}
    offline = run_ttlesson("auth", "whoami", env={**env, "HF_HUB_OFFLINE": "1"})
    for args, proc in [*runs.items(), (("auth", "whoami", "offline"), offline)]:
        output = proc.stdout + proc.stderr
        assert token not in output and not _leaks(output, token), (args, output)
        assert "Traceback" not in output, (args, output)
    assert hf.mask(token) in runs[("auth", "status")].stdout
    assert "from the HF_TOKEN environment variable" in runs[("auth", "status")].stdout
    assert json.loads(runs[("auth", "status", "--json")].stdout)["status"]["masked"] == hf.mask(token)
    doctor = {c["name"]: c for c in json.loads(runs[("doctor", "--json")].stdout)["checks"]}
    assert doctor["Hugging Face"]["status"] == "ok" and hf.mask(token) in doctor["Hugging Face"]["detail"]
    assert "rejected token" in runs[("auth", "whoami")].stderr and runs[("auth", "whoami")].returncode == 2
    assert "HF_HUB_OFFLINE is set" in offline.stderr and offline.returncode == 2


def test_whoami_against_the_hub_stand_in(hf_home, hub):
    env = {**hf_home, "HF_TOKEN": hub.good, "HF_ENDPOINT": f"http://127.0.0.1:{hub.server_port}"}
    proc = run_ttlesson("auth", "whoami", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (f"Logged in to Hugging Face as learner (member of tenstorrent) with token "
                                   f"{hf.mask(hub.good)} from the HF_TOKEN environment variable.")
    assert hub.good not in proc.stdout + proc.stderr


def test_unreachable_hub_is_one_sentence(hf_home):
    token = _token()
    # Port 9 on this machine: nothing listens there, so the connection is refused at once.
    proc = run_ttlesson("auth", "whoami", env={**hf_home, "HF_TOKEN": token, "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "could not be reached" in lines[0] and "HF_HUB_OFFLINE=1" in lines[0]
    assert token not in proc.stderr


def test_no_token(hf_home):
    status = run_ttlesson("auth", "status", env=hf_home)
    assert status.returncode == 0 and status.stdout.startswith("No Hugging Face token")
    assert ("sd14 (CompVis/stable-diffusion-v1-4) is not in the local cache yet: it is not gated" in status.stdout
            and "optional" in status.stdout)
    assert ("sd35-large (stabilityai/stable-diffusion-3.5-large) is not in the local cache yet, and it is gated"
            in status.stdout)
    whoami = run_ttlesson("auth", "whoami", env=hf_home)
    assert whoami.returncode == 2 and "No Hugging Face token is set" in whoami.stderr


def test_stored_login_is_named(hf_home, tmp_path):
    token = _token()
    home = tmp_path / "hf-home"
    home.mkdir()
    (home / "token").write_text(token)
    proc = run_ttlesson("auth", "status", "--json", env=hf_home)
    status = json.loads(proc.stdout)["status"]
    assert status["source"] == f"the stored login ({home / 'token'})" and status["masked"] == hf.mask(token)
    assert token not in proc.stdout + proc.stderr


def _cache(root, repo: str, parts: dict[str, list[str]]):
    """A Hub cache holding ``repo`` at one snapshot: model_index.json naming ``parts``, and the files given."""
    folder = root / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0" * 40)
    index = {"_class_name": "StableDiffusionPipeline", **{part: ["diffusers", "X"] for part in parts},
             "safety_checker": [None, None]}
    (snapshot / "model_index.json").write_text(json.dumps(index))
    for part, files in parts.items():
        (snapshot / part).mkdir()
        for name in files:
            (snapshot / part / name).write_text("")
    return root


def test_cache_state(tmp_path):
    repo = "CompVis/stable-diffusion-v1-4"
    assert hf.cache_state(repo, tmp_path / "empty") == "no"
    complete = _cache(tmp_path / "complete", repo, {"unet": ["diffusion_pytorch_model.safetensors"],
                                                    "vae": ["diffusion_pytorch_model.bin"],
                                                    "text_encoder": ["model.safetensors"], "tokenizer": ["vocab.json"]})
    assert hf.cache_state(repo, complete) == "complete"
    partial = _cache(tmp_path / "partial", repo, {"unet": ["diffusion_pytorch_model.safetensors"], "vae": [],
                                                  "text_encoder": ["model.safetensors"]})
    assert hf.cache_state(repo, partial) == "partial"


def test_model_access_messages(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf, "cache_state", lambda repo, cache_dir=None: "no")
    monkeypatch.setattr(hf, "status", lambda: hf.AuthStatus(False, None, None, offline=False))
    sd14 = str(hf.model_access("sd14"))
    assert "is not in the local cache yet: it is not gated" in sd14 and "logging in is optional" in sd14
    gated = hf.model_access("sd35-large")
    assert gated.gated and "accept its licence at https://huggingface.co/stabilityai" in str(gated)
    monkeypatch.setattr(hf, "status", lambda: hf.AuthStatus(False, None, None, offline=True))
    assert "HF_HUB_OFFLINE is set" in str(hf.model_access("sd14"))
    monkeypatch.setattr(hf, "cache_state", lambda repo, cache_dir=None: "complete")
    assert "is in the local cache" in str(hf.model_access("sd35-large"))
    assert hf.model_access("tiny").cached == "complete"
    assert not hf.model_access("sd35-large").needs_login  # cached: no login needed to load it


def test_access_table_answers_gated_cached_and_login(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf, "cache_state", lambda repo, cache_dir=None: "complete" if "v1-4" in repo else "no")
    monkeypatch.setattr(hf, "status", lambda: hf.AuthStatus(False, None, None, offline=False))
    table = hf.access_table()
    assert [(row.model, row.gated, row.cached, row.needs_login) for row in table.rows] == [
        ("sd14", False, "complete", False), ("sd35-large", True, "no", True)]
    page = table._repr_html_()
    assert "<th style='text-align:left'>in the local cache</th>" in page and "is in the local cache" in page


def test_login_paths(monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "notebook_login", lambda **kw: calls.append("widget"))
    monkeypatch.setattr(huggingface_hub, "login", lambda **kw: calls.append("prompt"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf, "is_offline", lambda: False)

    monkeypatch.setattr(hf, "in_notebook", lambda: True)
    assert hf.login() is None and calls == ["widget"]
    monkeypatch.setattr(hf, "in_notebook", lambda: False)
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # not a terminal
    with pytest.raises(HubAuthError, match="needs a terminal"):
        hf.login()
    monkeypatch.setattr(sys, "stdin", _Terminal())
    assert isinstance(hf.login(), hf.AuthStatus) and calls == ["widget", "prompt"]
    monkeypatch.setattr(hf, "is_offline", lambda: True)
    with pytest.raises(HubAuthError, match="HF_HUB_OFFLINE is set"):
        hf.login()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_in_a_notebook_here():
    assert hf.in_notebook() is False
