import hashlib
import json
import os
import subprocess
import sys

import pytest
from helpers import one_line_error, run_cli

from ttlesson import models, storyboard
from ttlesson.errors import ModelNotAvailableError
from ttlesson.models import tiny


def test_registry_settings_match_tt_metal_demo():
    sd14 = models.resolve("sd14")
    assert (sd14.source, sd14.width, sd14.height, sd14.steps, sd14.guidance) == (
        "CompVis/stable-diffusion-v1-4", 512, 512, 50, 7.5)
    sd35 = models.resolve("sd35-large")
    assert (sd35.source, sd35.width, sd35.steps, sd35.gated) == ("stabilityai/stable-diffusion-3.5-large", 1024, 28,
                                                                   True)


def test_unknown_model_and_non_pipeline_folder(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="Unknown model 'sd99'.*sd14"):
        models.resolve("sd99")
    with pytest.raises(ModelNotAvailableError, match="no model_index.json"):
        models.resolve(str(tmp_path))


def test_tiny_is_built_once_then_reused(tiny_folder):
    stamp = (tiny_folder / "model_index.json").stat().st_mtime_ns
    assert tiny.tiny_model_folder() == tiny_folder
    assert (tiny_folder / "model_index.json").stat().st_mtime_ns == stamp
    assert (tiny_folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not [p for p in tiny_folder.parent.iterdir() if p.name.startswith(".tiny-")]  # no staging left


def test_tiny_loads_through_from_pretrained_as_sd1_with_pndm(tiny_folder):
    pipe = models.load_pipeline(models.resolve("tiny"))
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert type(pipe.scheduler).__name__ == "PNDMScheduler"
    assert pipe.scheduler.config.skip_prk_steps and pipe.scheduler.config.steps_offset == 1
    assert pipe.safety_checker is None
    assert pipe.vae_scale_factor == 8
    assert pipe._progress_bar_config == {"disable": True}  # one progress display (ttlesson's), not two


def test_local_folder_is_a_model(tiny_folder):
    spec = models.resolve(str(tiny_folder))
    assert spec.family == "sd1" and (spec.width, spec.height) == (128, 128)
    assert spec.source == str(tiny_folder.resolve())


def test_tiny_tokenizer_counts_like_a_clip_tokenizer(tiny_folder):
    tokenizer = models.load_pipeline(models.resolve("tiny")).tokenizer
    assert tokenizer("a cat").input_ids[0] == tokenizer.bos_token_id
    assert len(tokenizer("a cat").input_ids) == 4  # start, a, cat, end
    counts = [len(tokenizer(prompt).input_ids) for prompt in storyboard.load("worlds-fair").prompts]
    assert max(counts) <= 77  # the lesson's prompts fit the encoder, as they do in CLIP's real vocabulary


@pytest.mark.slow
def test_offline_without_cached_weights_is_one_sentence(tmp_path):
    proc = run_cli("render", "worlds-fair", "--model", "sd14", "--out", tmp_path / "out",
                   env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    message = one_line_error(proc)
    assert "CompVis/stable-diffusion-v1-4" in message and "HF_HUB_OFFLINE" in message
    assert "--model tiny" in message
    assert not (tmp_path / "out" / "frames").exists()


@pytest.mark.slow
def test_unreachable_hub_without_cached_weights_is_one_sentence(tmp_path):
    # Port 9 on loopback refuses connections: the Hub "cannot be reached", the real client code runs.
    proc = run_cli("render", "worlds-fair", "--model", "sd14", "--out", tmp_path / "out",
                   env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"})
    message = one_line_error(proc)
    assert "could not be reached" in message and "--model tiny" in message


@pytest.fixture
def refusing_hub():
    """A local stand-in for the Hub that answers every request with one of its refusals (status and X-Error-Code
    header, as the Hub sends them), so huggingface_hub's own code raises its own error classes."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def _refuse(self):
            status, code = server.refusal
            body = json.dumps({"error": f"{code} (stand-in)"}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", f"{code} (stand-in)")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _refuse

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def _hub_env(hub, tmp_path) -> dict:
    return {"HF_ENDPOINT": f"http://127.0.0.1:{hub.server_port}", "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_OFFLINE": "0", "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "5"}


@pytest.mark.slow
def test_a_repository_the_hub_does_not_have_is_told_and_its_error_kept_as_the_cause(refusing_hub, tmp_path):
    refusing_hub.refusal = (404, "RepoNotFound")
    sentence = "The Hub has no model 'CompVis/stable-diffusion-v1-4'"
    proc = run_cli("render", "worlds-fair", "--model", "sd14", "--out", tmp_path / "out",
                   env=_hub_env(refusing_hub, tmp_path))
    assert sentence in one_line_error(proc) and "RepositoryNotFoundError" not in proc.stderr
    debug = run_cli("render", "worlds-fair", "--model", "sd14", "--out", tmp_path / "out",
                    env={**_hub_env(refusing_hub, tmp_path), "TTLESSON_DEBUG": "1"})
    assert debug.returncode == 2 and sentence in debug.stderr
    assert "caused by (TTLESSON_DEBUG=1)" in debug.stderr and "RepositoryNotFoundError" in debug.stderr


@pytest.mark.slow
def test_a_gated_repository_is_told_by_its_error_class(refusing_hub, tmp_path):
    refusing_hub.refusal = (403, "GatedRepo")  # not 401: the class alone must say "gated"
    code = ("from ttlesson import models\nfrom ttlesson.errors import ModelNotAvailableError\n"
            "try:\n    models.local_folder(models.resolve('sd35-large'))\nexcept ModelNotAvailableError as err:\n"
            "    print(type(err.__cause__).__name__, [type(e).__name__ for e in (err.__cause__.__cause__,)], err)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **_hub_env(refusing_hub, tmp_path)})
    assert "is gated on the Hugging Face Hub: accept its licence" in proc.stdout, proc.stdout + proc.stderr
    assert "GatedRepoError" in proc.stdout  # diffusers' OSError, caused by huggingface_hub's GatedRepoError


def test_gated_model_says_licence_and_login(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelNotAvailableError, match="accepting its licence.*log"):
        models.local_folder(models.resolve("sd35-large"))


def test_cached_model_index_records_the_recipe(tiny_folder, tiny_random_folder):
    for folder in (tiny_folder, tiny_random_folder):
        assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    digest = hashlib.sha256((tiny.shipped_tiny_weights() / "model.safetensors").read_bytes()).hexdigest()
    assert tiny_folder.name == f"tiny-sd-v{tiny.TINY_RECIPE_VERSION}-{digest[:12]}"  # new weights, new folder
    assert tiny_random_folder.name == f"tiny-random-sd-v{tiny.TINY_RECIPE_VERSION}"


@pytest.mark.parametrize("fixture", ["tiny_folder", "tiny_random_folder"])
def test_tiny_text_encoder_is_stored_in_the_hub_layout(fixture, request):
    # transformers 4 (tt-metal's env) reads only this layout; with another it would load random weights.
    from safetensors.torch import load_file
    from transformers import CLIPTextModel

    folder = request.getfixturevalue(fixture)
    keys = load_file(folder / "text_encoder" / "model.safetensors").keys()
    assert keys and all(key.startswith("text_model.") for key in keys)
    _, info = CLIPTextModel.from_pretrained(folder / "text_encoder", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_tiny_loads_the_shipped_weights_exactly(tiny_folder):
    # Every component of the cached pipeline holds the shipped (half-precision) weights, the text encoder included.
    import torch
    from safetensors.torch import load_file

    pipe = models.load_pipeline(models.resolve("tiny"))
    shipped = load_file(tiny.shipped_tiny_weights() / "model.safetensors")
    for component in ("unet", "vae", "text_encoder"):
        own = getattr(pipe, component).state_dict()
        for key, value in shipped.items():
            name, _, rest = key.partition(".")
            if name == component:
                rest = rest if rest in own else rest.removeprefix("text_model.")
                assert torch.equal(own[rest], value.float()), key
    assert pipe.vae.config.scaling_factor != 0.18215  # measured on the scenes, not SD 1.4's


def test_tiny_random_is_the_small_random_recipe(tiny_random_folder):
    pipe = models.load_pipeline(models.resolve("tiny-random"))
    assert tuple(pipe.unet.config.block_out_channels) == (32, 64)
    assert type(pipe.scheduler).__name__ == "PNDMScheduler" and pipe.vae_scale_factor == 8
    assert models.resolve("tiny-random").is_local


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file
    from transformers import CLIPTokenizer

    from ttlesson.errors import ModelNotAvailableError

    shipped = tiny.shipped_tiny_weights()
    state = load_file(shipped / "model.safetensors")
    state.pop(next(key for key in state if key.startswith("unet.")))
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt", "vae_scaling_factor": "1.0"})
    tokenizer = CLIPTokenizer(str(shipped / "vocab.json"), str(shipped / "merges.txt"))
    components = tiny.tiny_components(tiny.TINY_ARCHITECTURE, tokenizer)
    with pytest.raises(ModelNotAvailableError, match=r"does not fit the tiny unet \(1 weights missing.*train-tiny"):
        tiny.load_tiny_weights(components, tmp_path / "model.safetensors")


def test_shipped_tiny_model_is_a_few_megabytes():
    files = [p for p in tiny.shipped_tiny_weights().iterdir() if p.is_file()]
    assert {"model.safetensors", "vocab.json", "merges.txt", "score.json"} <= {p.name for p in files}
    assert sum(p.stat().st_size for p in files) < 16 * 2**20


def test_cache_and_frames_are_ordinary_files(tiny_folder, tmp_path):
    from ttlesson.fileio import current_umask, write_atomic

    assert tiny_folder.stat().st_mode & 0o777 == 0o777 & ~current_umask()
    assert write_atomic(tmp_path / "f.txt", "x").stat().st_mode & 0o777 == 0o666 & ~current_umask()
