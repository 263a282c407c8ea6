"""The tt backend's own logic, run against a STAND-IN device layer (tests/standin_tt.py), not ttnn.

The host side is real: the tiny model's CLIP tokenizer and text encoder make the embeddings, torch makes each
frame's noise. The device side is the stand-in: it records which buffers were filled, which traces were
captured, executed and released, and which meshes were closed; its output depends on the inputs it holds at
execution, so each PNG can be traced back to the frame it should show.
"""

import json
import os
import signal

import numpy as np
import pytest
import torch
from standin_tt import StandInTTNN, fingerprint, sd14_shaped_host, standin_picture, standin_sd14_modules

from ttlesson import manifest, models, storyboard
from ttlesson.backends import FrameRequest
from ttlesson.backends.tt import session as device_session
from ttlesson.backends.tt.chip import initial_latents, load_host_models, text_embeddings
from ttlesson.backends.tt.device import open_mesh
from ttlesson.backends.tt.runtime import Runtime
from ttlesson.backends.tt.sd14 import TTSD14Backend
from ttlesson.backends.tt.session import DeviceSession, SessionState
from ttlesson.errors import BackendUnavailableError, NoTTDeviceError, Terminated, TTDeviceError, TTMetalNotFoundError
from ttlesson.fileio import sha256_file
from ttlesson.frames import encode_png
from ttlesson.render import render

SD14 = models.resolve("sd14")


@pytest.fixture(autouse=True)
def tt_environment_restored():
    """The tt backend sets tt-metal's variables in this process (TT_LOGGER_FILE…): undo them after each test."""
    saved = {key: value for key, value in os.environ.items() if key.startswith(("TT_", "LOGURU_"))}
    yield
    for key in [key for key in os.environ if key.startswith(("TT_", "LOGURU_"))]:
        del os.environ[key]
    os.environ.update(saved)


@pytest.fixture(scope="module")
def tiny_host(tiny_folder):
    """The tiny model's host side with a 768-wide text encoder: its embeddings fit SD 1.4's [2, 96, 768] buffer."""
    return sd14_shaped_host(load_host_models(models.resolve("tiny")))


def standin_backend(tiny_host, chips=1, devices=1, **stub_options):
    """A TTSD14Backend whose ttnn and tt-metal package are the stand-ins, with the tiny model's CLIP on the host."""
    stub = StandInTTNN(chips=chips, **stub_options)
    runtime = Runtime(ttnn_loader=lambda: stub, driver_check=lambda: True,
                      sd14_loader=lambda arch: standin_sd14_modules(stub), host_loader=lambda spec: tiny_host)
    return TTSD14Backend(SD14, devices=devices, runtime=runtime), stub


def copied(values):
    """The fingerprint of ``values`` as they reach a device buffer: bf16, as ttnn.from_torch converts them."""
    return fingerprint(values.to(torch.bfloat16))


def request(prompt="a harbour at dawn", seed=0, steps=4, negative=None):
    return FrameRequest(prompt=prompt, seed=seed, steps=steps, guidance=7.5, width=512, height=512,
                        negative_prompt=negative)


def test_each_frame_gets_its_own_embeddings_and_noise_in_the_trace_buffers(tiny_host):
    backend, stub = standin_backend(tiny_host)
    frames = [request("a harbour at dawn", seed=3), request("a harbour at dusk", seed=4, negative="fog"),
              request("a lighthouse", seed=5)]
    with backend:
        images = [backend.generate(frame) for frame in frames]

    assert len(stub.calls("compile")) == 1 and len(stub.calls("begin_capture")) == 1  # captured once for 3 frames
    (trace_id,) = [entry[2] for entry in stub.calls("begin_capture")]
    per_frame = [entry for entry in stub.log if entry[0] in ("copy", "execute")][1:]  # [0]: latents for the compile
    for number, frame in enumerate(frames):
        embeddings_copy, latents_copy, execute = per_frame[3 * number: 3 * number + 3]
        assert embeddings_copy[3] == copied(text_embeddings(tiny_host, frame.prompt, frame.negative_prompt))
        assert latents_copy[3] == copied(initial_latents(frame.seed))
        assert execute == ("execute", "chip0", trace_id, False)  # non-blocking, the live trace
    bf16 = torch.bfloat16
    expected = [standin_picture(text_embeddings(tiny_host, f.prompt, f.negative_prompt).to(bf16),
                                initial_latents(f.seed).to(bf16)) for f in frames]
    for image, values in zip(images, expected):
        assert image.size == (512, 512) and image.mode == "RGB"
        as_the_demo = ((values.to(torch.bfloat16)[0, 0] / 2 + 0.5).clamp(0, 1).float() * 255).round()
        assert torch.equal(torch.from_numpy(np.array(image))[..., 0], as_the_demo.to(torch.uint8))
    assert stub.calls("release") == [("release", "chip0", trace_id)]
    assert [entry[1] for entry in stub.calls("close")] == ["chip0", "mesh"]  # submesh first, then the mesh
    assert stub.log.index(stub.calls("release")[0]) < stub.log.index(stub.calls("close")[0])


def test_noise_is_the_torch_backends_noise_for_the_same_seed():
    from diffusers.utils.torch_utils import randn_tensor

    for seed in (0, 7, 2**32 - 1):
        torch_backend_noise = randn_tensor((1, 4, 64, 64), generator=torch.Generator("cpu").manual_seed(seed))
        assert torch.equal(initial_latents(seed), torch_backend_noise)


def test_another_step_count_releases_then_recaptures(tiny_host):
    backend, stub = standin_backend(tiny_host)
    with backend:
        backend.generate(request(steps=4))
        backend.generate(request(steps=4, seed=1))
        backend.generate(request(steps=6))
    first, second = (entry[2] for entry in stub.calls("begin_capture"))
    assert [entry[2:4] for entry in stub.calls("compile")] == [(4, 7.5), (6, 7.5)]
    assert [entry[2] for entry in stub.calls("execute")] == [first, first, second]
    assert stub.log.index(("release", "chip0", first)) < stub.log.index(("begin_capture", "chip0", second))
    assert [entry[2] for entry in stub.calls("release")] == [first, second]  # each exactly once


def test_warm_up_is_timed_apart_and_frames_after_it_capture_nothing(tiny_host):
    backend, stub = standin_backend(tiny_host)
    with backend:
        assert backend.warm_up(request()) > 0
        assert backend.warm_up(request()) == 0.0  # already captured for these settings
        backend.generate(request())
    assert len(stub.calls("compile")) == 1
    assert backend.timings.load_seconds > 0 and len(backend.timings.capture_seconds) == 1
    assert len(backend.timings.frame_seconds) == 1


def test_device_error_mid_frame_is_one_sentence_and_everything_is_released(tiny_host):
    backend, stub = standin_backend(tiny_host)
    stub.fail_on_execute = RuntimeError("TT_THROW @ dispatch.cpp:1: tt::exception\ninfo:\nTimeout waiting for "
                                        "completion queue\nbacktrace:\n --- libtt_metal.so")
    with pytest.raises(TTDeviceError) as err, backend:
        backend.generate(request())
    assert "did not respond (Timeout waiting for completion queue)" in str(err.value)
    assert "run tt-smi -r to reset it" in str(err.value) and "\n" not in str(err.value)
    assert len(stub.calls("release")) == 1 and [e[1] for e in stub.calls("close")] == ["chip0", "mesh"]


def test_keyboard_interrupt_in_a_render_releases_the_trace_and_closes_the_device(tiny_host, tmp_path):
    backend, stub = standin_backend(tiny_host)
    stub.fail_on_read = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        with backend:
            render(storyboard.loads('["one", "two"]'), tmp_path, model="sd14", backend=backend, steps=4)
    assert len(stub.calls("execute")) == 1 and len(stub.calls("release")) == 1
    assert [e[1] for e in stub.calls("close")] == ["chip0", "mesh"]
    assert not list(manifest.frames_dir(tmp_path).glob("*.png"))


def test_no_path_replays_a_released_trace(tiny_host):
    backend, stub = standin_backend(tiny_host)
    with backend:
        backend.generate(request())
    backend.close()  # a second close does nothing
    backend.generate(request(seed=9))  # opens again, captures again: never the released trace
    backend.close()
    first, second = (entry[2] for entry in stub.calls("begin_capture"))
    assert [entry[2] for entry in stub.calls("execute")] == [first, second]
    assert [entry[2] for entry in stub.calls("release")] == [first, second]
    assert len(stub.calls("open_mesh")) == 2 and len(stub.calls("close")) == 4


def test_no_device_refuses_before_the_package_or_any_weights_load():
    def must_not_run(*args):
        raise AssertionError("loaded something on a machine without a device")

    runtime = Runtime(ttnn_loader=must_not_run, driver_check=lambda: False, sd14_loader=must_not_run,
                      host_loader=must_not_run)
    with pytest.raises(NoTTDeviceError, match=r"^No Tenstorrent device found .* use --backend torch"):
        TTSD14Backend(SD14, runtime=runtime).load()


def test_missing_tt_metal_is_refused_before_the_device_opens(monkeypatch):
    stub = StandInTTNN()
    monkeypatch.setenv("TT_METAL_HOME", "/nonexistent/tt-metal")
    runtime = Runtime(ttnn_loader=lambda: stub, driver_check=lambda: True)
    with pytest.raises(TTMetalNotFoundError, match="TT_METAL_HOME=/nonexistent/tt-metal is not a tt-metal checkout"):
        TTSD14Backend(SD14, runtime=runtime).load()
    assert stub.calls("open_mesh") == []


@pytest.mark.parametrize("message,expected", [
    ("TT_THROW @ build.cpp:291: tt::exception\ninfo:\nsfpi not found at /x/sfpi or /opt/tenstorrent/sfpi\nbacktrace:",
     "kernel compiler is missing (sfpi not found at /x/sfpi or /opt/tenstorrent/sfpi) (tt-metal's log: "),
    ("Device 0 init: failed to initialize FW! Try resetting the board.", "run tt-smi -r to reset it"),
])
def test_open_failures_are_one_sentence_and_load_no_weights(tiny_host, message, expected, tmp_path, monkeypatch):
    def must_not_run(spec):
        raise AssertionError("weights loaded although the device did not open")

    # The log file is named only when tt-metal is sure to use it: set it, whatever earlier tests imported.
    monkeypatch.setenv("TT_LOGGER_FILE", str(tmp_path / "tt-metal.log"))

    stub = StandInTTNN(open_error=RuntimeError(message))
    runtime = Runtime(ttnn_loader=lambda: stub, driver_check=lambda: True,
                      sd14_loader=lambda arch: standin_sd14_modules(stub), host_loader=must_not_run)
    with pytest.raises(TTDeviceError) as err:
        TTSD14Backend(SD14, runtime=runtime).load()
    assert expected in str(err.value) and "\n" not in str(err.value)
    assert stub.calls("close") == []  # nothing was opened, nothing to close


@pytest.mark.parametrize("frame,expected", [
    (FrameRequest("x", 0, 50, 7.5, 768, 512), "Size 768x512 does not run on the tt backend: .*512x512 .*--size 512"),
    (FrameRequest("x", 0, 3, 7.5, 512, 512), "Steps 3 is too few for tt-metal's PNDM scheduler; give --steps 4"),
])
def test_requests_tt_metal_cannot_make_are_refused(frame, expected):
    with pytest.raises(BackendUnavailableError, match=expected):
        TTSD14Backend(SD14, runtime=Runtime(driver_check=lambda: True)).check_request(frame)


def test_no_device_is_said_first_with_every_other_fix_at_once():
    tiny_request = FrameRequest("x", 0, 2, 7.5, 128, 128)
    with pytest.raises(NoTTDeviceError) as err:
        TTSD14Backend(models.resolve("tiny"), runtime=Runtime(driver_check=lambda: False)).check_request(tiny_request)
    message = str(err.value)
    assert message.startswith("No Tenstorrent device found") and "\n" not in message
    assert message.endswith("this run would also need --model sd14 (tt-metal's own model, not tiny) and "
                            "--size 512 and --steps 4 or more.")
    with pytest.raises(BackendUnavailableError, match=r"^The tt backend runs tt-metal's own models.*; this run "
                                                      r"would also need --size 512 and --steps 4 or more\.$"):
        TTSD14Backend(models.resolve("tiny"), runtime=Runtime(driver_check=lambda: True)).check_request(tiny_request)


def test_only_tt_metals_models(tiny_host):
    backend, _ = standin_backend(tiny_host)
    backend.spec = models.resolve("tiny")
    with pytest.raises(BackendUnavailableError, match="runs tt-metal's own models, --model sd14 .* --backend torch"):
        backend.load()


def test_two_chips_run_side_by_side_and_make_the_same_frames_as_one(tiny_host, tmp_path):
    board = storyboard.loads('["one", "two", "three", {"prompt": "four", "seed": 40}, "five"]')
    one, _ = standin_backend(tiny_host)
    two, stub = standin_backend(tiny_host, chips=2, devices="all")
    with one, two:
        single = render(board, tmp_path / "one", model="sd14", backend=one, steps=4)
        events = []
        double = render(board, tmp_path / "two", model="sd14", backend=two, steps=4, on_event=events.append)

    assert stub.calls("create_submeshes") == [("create_submeshes", "mesh", 2)]
    assert [entry[1] for entry in stub.calls("begin_capture")] == ["chip0", "chip1"]
    first_read = stub.log.index(stub.calls("read")[0])
    assert [e[1] for e in stub.log[:first_read] if e[0] == "execute"] == ["chip0", "chip1"]  # both busy at once
    assert all(not entry[3] for entry in stub.calls("execute"))
    for index in range(5):
        name = manifest.frame_filename(index)
        assert sha256_file(double.out_dir / "frames" / name) == sha256_file(single.out_dir / "frames" / name)
    devices = [record.device for _, record in sorted(double.manifest.frames.items())]
    assert devices == ["tt:0 (wormhole_b0)", "tt:1 (wormhole_b0)"] * 2 + ["tt:0 (wormhole_b0)"]
    assert [r.seed for _, r in sorted(double.manifest.frames.items())] == [0, 1, 2, 40, 4]
    started = [e for e in events if type(e).__name__ == "FrameStarted"]
    assert [(e.index, e.device) for e in started][:2] == [(0, "tt:0 (wormhole_b0)"), (1, "tt:1 (wormhole_b0)")]
    assert [type(e).__name__ for e in events[:3]] == ["RenderStarted", "ModelLoaded", "WarmedUp"]
    assert events[1].reports_steps is False and "per frame" in events[1].note


def test_more_chips_than_the_machine_has(tiny_host):
    backend, stub = standin_backend(tiny_host, chips=1, devices=2)
    with pytest.raises(BackendUnavailableError, match=r"--devices 2 asks for more Tenstorrent chips than this "
                                                      r"machine has \(1\); give --devices 1 or --devices all"):
        backend.load()
    assert stub.calls("open_mesh") == []


def test_png_bytes_come_from_the_one_encoder(tiny_host, tmp_path):
    backend, _ = standin_backend(tiny_host)
    with backend:
        result = render(storyboard.loads('["one"]'), tmp_path, model="sd14", backend=backend, steps=4)
        again = encode_png(backend.generate(request("one", seed=0)))
    assert (tmp_path / result.manifest.frames[0].file).read_bytes() == again


def test_cli_help_imports_neither_ttnn_nor_torch():
    import subprocess
    import sys

    probe = ("import sys; from ttlesson import cli; cli.build_parser().format_help(); "
             "import ttlesson.backends, ttlesson.tenstorrent.checkout, ttlesson.frames, ttlesson.backends.workers; "
             "print(sorted(m for m in ('ttnn', 'torch', 'diffusers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_new_settings_wait_for_the_chips_to_finish_before_recapturing(tiny_host):
    backend, stub = standin_backend(tiny_host, chips=2, devices=2)
    items = [(0, request(steps=4)), (1, request(steps=4, seed=1)), (2, request(steps=6)), (3, request(steps=6))]
    with backend:
        made = list(backend.generate_many(items))
    assert sorted(frame.index for frame in made) == [0, 1, 2, 3]
    old = [entry[2] for entry in stub.calls("begin_capture")][:2]
    reads = [i for i, entry in enumerate(stub.log) if entry[0] == "read"]
    releases = [i for i, entry in enumerate(stub.log) if entry[0] == "release" and entry[2] in old]
    assert len(releases) == 2 and max(reads[:2]) < min(releases)  # both old frames read before any release
    assert [e[2:4] for e in stub.calls("compile")] == [(4, 7.5), (4, 7.5), (6, 7.5), (6, 7.5)]


# --- SD 3.5 Large over a mesh (stand-in ttnn, stand-in tt_dit pipeline classes) -------------------------------

class StandInSD35Pipeline:
    """Plays tt_dit's newer StableDiffusion3Pipeline API: create_pipeline(*, mesh_device, ...) and __call__."""

    calls: list = []

    @classmethod
    def create_pipeline(cls, *, mesh_device, width=1024, height=1024, cfg_enabled=True, max_t5_sequence_length=256,
                        checkpoint_name="stabilityai/stable-diffusion-3.5-large"):
        cls.calls.append(("create", mesh_device.label, width, height, checkpoint_name))
        return cls()

    def __call__(self, *, prompts, negative_prompts=None, num_inference_steps, seed=0, guidance_scale=3.5,
                 traced=False):
        from PIL import Image

        self.calls.append(("call", prompts, negative_prompts, num_inference_steps, seed, guidance_scale, traced))
        return [Image.new("RGB", (1024, 1024), (seed % 256, 0, 0))]


class StandInOlderSD35Pipeline:
    """Plays the older experimental tt_dit API: guidance fixed in create_pipeline, prompt_1/2/3 in __call__."""

    calls: list = []

    @staticmethod
    def create_pipeline(mesh_device, batch_size=1, image_w=1024, image_h=1024, guidance_scale=3.5,
                        checkpoint_name="stabilityai/stable-diffusion-3.5-large"):
        StandInOlderSD35Pipeline.calls.append(("create", image_w, image_h, guidance_scale))
        return StandInOlderSD35Pipeline()

    def __call__(self, *, prompt_1, prompt_2, prompt_3, negative_prompt_1, negative_prompt_2, negative_prompt_3,
                 num_inference_steps=40, seed=None, traced=False):
        from PIL import Image

        self.calls.append(("call", prompt_1, prompt_3, negative_prompt_2, num_inference_steps, seed, traced))
        return [Image.new("RGB", (1024, 1024))]


def sd35_backend(shape, pipeline_class=StandInSD35Pipeline, arch="wormhole_b0"):
    """SD 3.5 on a stand-in system whose ttnn reports ``shape`` as its system mesh (as the real ttnn does: a T3K
    2×4, a Galaxy 8×4, a 4-chip Blackhole box 2×2)."""
    from ttlesson.backends.tt.sd35 import TTSD35Backend

    stub = StandInTTNN(chips=shape[0] * shape[1], mesh_shape=shape, arch=arch)
    loaded = []
    runtime = Runtime(ttnn_loader=lambda: stub, driver_check=lambda: True,
                      sd35_loader=lambda: loaded.append(1) or pipeline_class)
    return TTSD35Backend(models.resolve("sd35-large"), runtime=runtime), stub, loaded


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub

    state = {"token": None}
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: state["token"])
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: None)
    return state


@pytest.mark.parametrize("arch,shape,system", [
    ("wormhole_b0", (1, 1), "N150: 1 wormhole_b0 chip, system mesh 1×1"),
    ("wormhole_b0", (2, 1), "N300: 2 wormhole_b0 chips, system mesh 2×1"),
    ("blackhole", (2, 1), "P300: 2 blackhole chips, system mesh 2×1"),
    ("blackhole", (8, 4), "Blackhole Galaxy: 32 blackhole chips, system mesh 8×4"),
])
def test_sd35_where_tt_dit_has_no_preset_is_refused_before_anything_loads(hub, arch, shape, system):
    backend, stub, loaded = sd35_backend(shape, arch=arch)
    with pytest.raises(BackendUnavailableError) as err:
        backend.load()
    assert str(err.value) == ("SD 3.5 Large runs on a T3K (2×4), a Wormhole Galaxy (opened 4×8) or a 4-chip "
                              f"Blackhole QuietBox (opened as a 1×4 ring), not on this {system}; use --model sd14, "
                              "which runs on every Tenstorrent chip.")
    assert loaded == [] and stub.calls("open_mesh") == []


def test_sd35_on_a_blackhole_loudbox_says_how_to_use_four_of_its_chips(hub):
    backend, _, _ = sd35_backend((2, 4), arch="blackhole")
    with pytest.raises(BackendUnavailableError, match=r"not on this Blackhole LoudBox \(8×P150\): 8 blackhole chips, "
                                                      r"system mesh 2×4; make four chips that are linked in a ring "
                                                      r"the only visible ones \(TT_VISIBLE_DEVICES=a,b,c,d"):
        backend.load()


@pytest.mark.parametrize("arch,system_shape,opened,fabric,l1", [
    ("wormhole_b0", (2, 4), (2, 4), "FABRIC_2D", 32768),  # T3K: tt_dit's 2×4 preset as it is
    ("wormhole_b0", (8, 4), (4, 8), "FABRIC_2D", 32768),  # Galaxy: ttnn says 8×4, tt_dit's preset is 4×8
    ("blackhole", (2, 2), (1, 4), "FABRIC_1D_RING", 65536),  # 4-chip Blackhole box: 2×2 to ttnn, a 1×4 ring to tt_dit
])
def test_sd35_opens_the_mesh_in_the_shape_tt_dit_expects(hub, arch, system_shape, opened, fabric, l1):
    hub["token"] = "hf_standin"
    StandInSD35Pipeline.calls.clear()
    backend, stub, _ = sd35_backend(system_shape, arch=arch)
    with pytest.warns(UserWarning), backend:
        assert backend.shape == opened
    (open_call,) = stub.calls("open_mesh")
    assert open_call[2] == {"mesh_shape": opened, "l1_small_size": l1, "trace_region_size": 50_000_000}
    assert [entry[2] for entry in stub.calls("fabric")] == [fabric, "DISABLED"]


def test_sd35_gated_checkpoint_without_login_stops_before_opening(hub):
    from ttlesson.errors import ModelNotAvailableError

    backend, stub, _ = sd35_backend((2, 4))
    with pytest.raises(ModelNotAvailableError, match="is gated on the Hugging Face Hub and not downloaded yet: "
                                                     "accept its licence .* or use --model sd14"):
        backend.load()
    assert stub.calls("open_mesh") == []


def test_sd35_on_a_t3k_says_gated_then_makes_seeded_frames_and_closes(hub):
    from ttlesson.errors import GatedCheckpointWarning

    hub["token"] = "hf_standin"
    StandInSD35Pipeline.calls.clear()
    backend, stub, _ = sd35_backend((2, 4))
    with pytest.warns(GatedCheckpointWarning, match="is gated: tt-metal's pipeline now downloads it"):
        backend.load()
    assert stub.calls("fabric")[0][2] == "FABRIC_2D"
    assert stub.calls("open_mesh")[0][2]["trace_region_size"] == 50000000
    image = backend.generate(FrameRequest("a pier", seed=9, steps=28, guidance=3.5, width=1024, height=1024,
                                          negative_prompt="fog"))
    backend.close()
    backend.close()  # a second close does nothing
    assert image.size == (1024, 1024) and image.getpixel((0, 0))[0] == 9
    assert StandInSD35Pipeline.calls == [
        ("create", "mesh", 1024, 1024, "stabilityai/stable-diffusion-3.5-large"),
        ("call", ["a pier"], ["fog"], 28, 9, 3.5, True)]
    assert backend.device == "Tenstorrent wormhole_b0 mesh 2×4"
    assert [e[1] for e in stub.calls("close")] == ["mesh"] and stub.calls("fabric")[-1][2] == "DISABLED"
    with pytest.raises(BackendUnavailableError, match="Size 512x512 does not run on the tt backend's SD 3.5 Large"):
        backend.check_request(FrameRequest("x", 0, 28, 3.5, 512, 512))


def test_a_render_with_sd35_on_a_t3k_makes_its_frames_without_counting_tokens(hub, tmp_path):
    """tt-metal's SD 3.5 pipeline keeps its tokenizers to itself: the render makes the frames and warns about no
    prompt (it once stopped with NotImplementedError before the first frame). STAND-IN device layer."""
    import warnings

    from ttlesson import storyboard
    from ttlesson.render import render

    hub["token"] = "hf_standin"
    backend, _, _ = sd35_backend((2, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the gated-checkpoint notice, tested above
        result = render(storyboard.loads('["a pier at dawn", "a pier at dusk"]'), tmp_path, backend=backend,
                        model="sd35-large")
    assert result.made == [0, 1] and len(list((tmp_path / "frames").glob("frame_*.png"))) == 2


def test_sd35_older_tt_dit_api(hub):
    hub["token"] = "hf_standin"
    StandInOlderSD35Pipeline.calls.clear()
    backend, _, _ = sd35_backend((8, 4), StandInOlderSD35Pipeline)
    with pytest.warns(UserWarning), backend:
        backend.generate(FrameRequest("a pier", seed=2, steps=28, guidance=3.5, width=1024, height=1024))
        with pytest.raises(BackendUnavailableError, match="fixes guidance when it is built \\(3.5\\)"):
            backend.generate(FrameRequest("a pier", seed=2, steps=28, guidance=5.0, width=1024, height=1024))
    assert StandInOlderSD35Pipeline.calls == [("create", 1024, 1024, 3.5),
                                              ("call", ["a pier"], ["a pier"], [""], 28, 2, True)]


def test_check_tt_makes_the_demo_frame_compares_it_and_prints_a_report(tiny_host, tmp_path, monkeypatch):
    from PIL import Image

    from ttlesson.backends.tt.selftest import DEMO_FIRST_PROMPT, run_check

    monkeypatch.delenv("TT_METAL_HOME", raising=False)
    _, stub = standin_backend(tiny_host)
    runtime = Runtime(ttnn_loader=lambda: stub, driver_check=lambda: True,
                      sd14_loader=lambda arch: standin_sd14_modules(stub), host_loader=lambda spec: tiny_host)
    result = run_check(tmp_path, steps=4, runtime=runtime)
    assert result.path == tmp_path / "ttlesson_1_512x512_ttnn.png" and result.comparison is None and result.ok
    assert (result.prompt, result.seed) == (DEMO_FIRST_PROMPT, 174)  # the demo's own frame
    assert os.environ["TT_METAL_OPERATION_TIMEOUT_SECONDS"] == "300" and os.environ["TT_LOGGER_LEVEL"] == "info"
    text = str(result)
    assert "compared: no demo image to compare with (looked for input_data_1_512x512_ttnn.png" in text
    report = text.split("--- paste into a bug report ---\n")[1].splitlines()
    assert report[0].startswith("ttnn: ") and report[1].startswith("tt-metal: ")
    assert report[3].startswith("board: ") and report[4].startswith("mesh: N150: 1 wormhole_b0 chip")
    assert report[5] == "device: Tenstorrent wormhole_b0 (tt:0)"
    assert report[6] == "frame: demo prompt, seed 174, 4 steps, 512x512"
    assert [line.split(":")[0] for line in report[7:11]] == [
        "load (device open, weights, device models)", "compile (first run of the loop, kernels built)",
        "trace capture (4 steps)", "one frame (traced)"]
    assert result.load_seconds > 0 and result.frame_seconds > 0
    assert result.compile_seconds >= 0 and result.capture_seconds >= 0
    assert len(stub.calls("execute")) == 1 and len(stub.calls("release")) == 1 and len(stub.calls("close")) == 2

    demo = tmp_path / "input_data_1_512x512_ttnn.png"  # as the demo would have written it from the same trace
    demo.write_bytes(result.path.read_bytes())
    same = run_check(tmp_path, steps=4, runtime=runtime)
    assert same.comparison.demo_image == demo and same.comparison.psnr_db == float("inf") and same.ok
    assert "identical to the demo's image" in str(same)

    with Image.open(result.path) as image:
        shifted = image.point(lambda value: min(255, value + 40))
    shifted.save(demo)
    differs = run_check(tmp_path, steps=4, runtime=runtime)
    assert differs.comparison.psnr_db < 25 and not differs.ok
    assert differs.comparison.verdict.startswith("differs from the demo's image (PSNR ")


def test_notebook_display_of_a_traced_render_says_tt_and_per_frame(tiny_host, tmp_path):
    from ttlesson.notebook.widgets import NotebookProgress

    backend, _ = standin_backend(tiny_host)
    display = NotebookProgress()
    seen = []
    with backend:
        render(storyboard.loads('["one", "two"]'), tmp_path, model="sd14", backend=backend, steps=4,
               on_event=lambda event: (display(event), seen.append(display.status.value)))
    assert display.notice.value.startswith("Frames are made on Tenstorrent hardware: <b>Tenstorrent wormhole_b0")
    assert "Progress is per frame" in display.notice.value and display.steps_bar.layout.display == "none"
    assert any("once per run" in status for status in seen)
    assert display.frames_bar.value == 2 and len(display.thumbnails) == 2


# --- limits the real traced loop has, refused up front ---------------------------------------------------------

def test_more_steps_than_the_trace_region_holds_are_refused_before_loading():
    with_a_chip = Runtime(driver_check=lambda: True)
    with pytest.raises(BackendUnavailableError) as err:
        TTSD14Backend(SD14, runtime=with_a_chip).check_request(request(steps=51))
    assert str(err.value) == ("Steps 51 do not fit tt-metal's SD 1.4 trace, whose region is sized for its 50-step "
                              "loop; give --steps 50 or fewer (or --backend torch for more).")
    TTSD14Backend(SD14, runtime=with_a_chip).check_request(request(steps=50))
    # Without a chip, the missing device is said first and the step limit with it.
    with pytest.raises(NoTTDeviceError, match="No Tenstorrent device found.*also need --steps 50 or fewer"):
        TTSD14Backend(SD14, runtime=Runtime(driver_check=lambda: False)).check_request(request(steps=51))


def test_a_chip_with_another_compute_grid_is_refused_before_weights_load(tiny_host):
    def must_not_load(spec):
        raise AssertionError("weights loaded for a chip the demo cannot use")

    stub = StandInTTNN(grid=(8, 9))  # a Galaxy chip without tt's core-grid override
    runtime = Runtime(ttnn_loader=lambda: stub, driver_check=lambda: True,
                      sd14_loader=lambda arch: standin_sd14_modules(stub), host_loader=must_not_load)
    with pytest.raises(BackendUnavailableError, match=r"^Chip tt:0 has a 8×9 compute grid but tt-metal's SD 1.4 is "
                                                      r"built for 8×8 on wormhole_b0; set TT_METAL_CORE_GRID"):
        TTSD14Backend(SD14, runtime=runtime).load()
    assert [entry[1] for entry in stub.calls("close")] == ["chip0", "mesh"]


def test_the_mesh_is_opened_in_the_systems_shape(tiny_host):
    backend, stub = standin_backend(tiny_host, chips=8, devices="all", mesh_shape=(2, 4))
    with backend:
        assert backend.parallel == 8 and backend.mesh_shape == (2, 4)
    assert stub.calls("open_mesh")[0][2]["mesh_shape"] == (2, 4)


# --- closing on every path -------------------------------------------------------------------------------------

def test_a_submesh_that_fails_to_close_does_not_keep_the_mesh_open(tiny_host):
    backend, stub = standin_backend(tiny_host, chips=2, devices="all")
    stub.fail_on_close["chip0"] = RuntimeError("TT_FATAL @ mesh_device.cpp:1\ninfo:\nclose failed\nbacktrace:")
    backend.generate(request())
    with pytest.raises(TTDeviceError, match=r"^Closing the Tenstorrent device failed \(close failed\); run tt-smi -r"):
        backend.close()
    assert [entry[1] for entry in stub.calls("close")] == ["chip0", "chip1", "mesh"]
    assert len(stub.calls("release")) == 2  # both traces released first


def test_a_capture_failing_midway_is_ended_and_released_before_the_device_closes(tiny_host):
    stub = StandInTTNN()
    failing = standin_sd14_modules(stub, fail_during_capture=RuntimeError(
        "TT_FATAL @ conv2d.cpp:1\ninfo:\nOut of L1 while capturing\nbacktrace:"))
    runtime = Runtime(ttnn_loader=lambda: stub, driver_check=lambda: True, sd14_loader=lambda arch: failing,
                      host_loader=lambda spec: tiny_host)
    with pytest.raises(TTDeviceError, match=r"The Tenstorrent device failed \(Out of L1 while capturing\)"):
        with TTSD14Backend(SD14, runtime=runtime) as backend:
            backend.warm_up(request())
    order = [entry[0] for entry in stub.log if entry[0] in ("begin_capture", "end_capture", "release", "close")]
    assert order == ["begin_capture", "end_capture", "release", "close", "close"]
    assert stub.capturing == {}


SIGTERM_RENDER = """
import atexit, json, sys
sys.path.insert(0, {tests!r})
from standin_tt import standin_runtime
from ttlesson import cli
from ttlesson.backends import tt

runtime = standin_runtime(chips=2, execute_seconds=0.4)
stub = runtime.ttnn_loader()
real_create = tt.create_tt
tt.create_tt = lambda spec, devices=1, runtime_=None, parallel=None: real_create(spec, devices, runtime)
atexit.register(lambda: open({log!r}, "w").write(json.dumps([list(entry[:3]) for entry in stub.log
                                                                if entry[0] in ("release", "close")])))
sys.exit(cli.main(["render", {board!r}, "--backend", "tt", "--model", "sd14", "--steps", "4", "--devices", "all",
                   "--out", {out!r}, "--quiet"]))
"""


@pytest.mark.slow
def test_sigterm_during_a_render_closes_the_device_and_leaves_only_whole_frames(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from PIL import Image

    board = tmp_path / "board.txt"
    board.write_text("\n".join(f"frame {n}" for n in range(12)) + "\n")
    out, log = tmp_path / "out", tmp_path / "device-log.json"
    program = SIGTERM_RENDER.format(tests=str(Path(__file__).parent), log=str(log), board=str(board), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    frames = out / "frames"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list(frames.glob("frame_*.png")) and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)

    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == ("ttlesson render: stopped (SIGTERM); finished frames are kept, "
                                               "run the same command to resume.")
    closing = json.loads(log.read_text())
    assert [entry[0] for entry in closing] == ["release", "release", "close", "close", "close"]
    assert [entry[1] for entry in closing[2:]] == ["chip0", "chip1", "mesh"]
    book = manifest.load(out)
    made = sorted(frames.glob("frame_*.png"))
    assert 1 <= len(made) < 12 and len(book.frames) >= len(made)
    for path in made:  # every frame on disk is whole and is the one the manifest records
        with Image.open(path) as image:
            image.load()
        index = int(path.stem.split("_")[1])
        assert book.frames[index].sha256 == sha256_file(path)


# --- the device session every tt backend opens and closes through (STAND-IN mesh) --------------------------------

def opens_the_mesh(stub):
    """An opener that opens the stand-in's mesh into the session's stack, as the backends open theirs."""
    return lambda stack: stack.enter_context(open_mesh(stub, mesh_shape=(1, 1), l1_small_size=0, trace_region_size=0))


class RecordedAtExit:
    """Stands in for the interpreter's atexit in the session module: records the hooks it is given."""

    def __init__(self):
        self.hooks = []

    def register(self, hook):
        self.hooks.append(hook)

    def unregister(self, hook):
        self.hooks = [kept for kept in self.hooks if kept != hook]


def test_a_session_goes_unopened_open_closed_and_refuses_what_its_state_does_not_allow():
    stub = StandInTTNN()
    session = DeviceSession()
    assert session.state is SessionState.UNOPENED and not session.is_open
    with pytest.raises(RuntimeError, match=r"^This device session is unopened: open it before working"):
        session.working()
    session.open(opens_the_mesh(stub))
    assert session.state is SessionState.OPEN and session.is_open
    with session.working():
        pass
    with pytest.raises(RuntimeError, match=r"^This device session is open: a session opens once"):
        session.open(opens_the_mesh(stub))
    assert session.is_open and len(stub.calls("open_mesh")) == 1  # the refused open neither opened nor closed
    session.close()
    assert session.state is SessionState.CLOSED and [entry[1] for entry in stub.calls("close")] == ["mesh"]
    with pytest.raises(RuntimeError, match=r"^This device session is closed: a session opens once; a backend"):
        session.open(opens_the_mesh(stub))
    with pytest.raises(RuntimeError, match=r"^This device session is closed: open it before working"):
        session.working()
    never_opened = DeviceSession()
    never_opened.close()  # closing what never opened is harmless, and final
    assert never_opened.state is SessionState.CLOSED


def test_closing_twice_and_then_from_atexit_closes_the_device_once(monkeypatch):
    at_exit = RecordedAtExit()
    monkeypatch.setattr(device_session, "atexit", at_exit)
    stub = StandInTTNN()  # refuses a mesh closed twice
    session = DeviceSession()
    session.open(opens_the_mesh(stub))
    (hook,) = at_exit.hooks
    session.close()
    session.close()
    assert at_exit.hooks == []
    hook()  # what interpreter exit would run, had the hook stayed
    assert [entry[1] for entry in stub.calls("close")] == ["mesh"]


def test_a_failing_open_releases_what_it_opened_and_leaves_the_session_closed(monkeypatch):
    at_exit = RecordedAtExit()
    monkeypatch.setattr(device_session, "atexit", at_exit)
    stub = StandInTTNN()
    handler = signal.getsignal(signal.SIGTERM)

    def fails_after_opening(stack):
        opens_the_mesh(stub)(stack)
        stack.callback(stub.log.append, ("release", "mesh", 1))
        raise TTDeviceError("the weights did not load")

    session = DeviceSession()
    with pytest.raises(TTDeviceError, match="the weights did not load"):
        session.open(fails_after_opening)
    assert session.state is SessionState.CLOSED
    assert [entry[0] for entry in stub.log if entry[0] in ("release", "close")] == ["release", "close"]
    assert at_exit.hooks == [] and signal.getsignal(signal.SIGTERM) == handler


def test_sigterm_stops_a_working_session_and_closes_an_idle_one():
    heard = []

    def hear(number, frame):
        heard.append(number)

    previous = signal.signal(signal.SIGTERM, hear)
    try:
        working_stub, idle_stub = StandInTTNN(), StandInTTNN()
        working = DeviceSession()
        working.open(opens_the_mesh(working_stub))
        with pytest.raises(Terminated), working.working():
            signal.raise_signal(signal.SIGTERM)  # unwinds like Ctrl-C, to whoever closes the backend
        assert working.is_open and heard == []
        working.close()
        idle = DeviceSession()
        idle.open(opens_the_mesh(idle_stub))
        signal.raise_signal(signal.SIGTERM)  # closes, then hands SIGTERM to the handler it replaced
        assert idle.state is SessionState.CLOSED and [entry[1] for entry in idle_stub.calls("close")] == ["mesh"]
        assert heard == [signal.SIGTERM] and signal.getsignal(signal.SIGTERM) is hear
    finally:
        signal.signal(signal.SIGTERM, previous)


AT_EXIT = """
import atexit, json, sys
sys.path.insert(0, {tests!r})
from standin_tt import StandInTTNN
from ttlesson.backends.tt.device import open_mesh
from ttlesson.backends.tt.session import DeviceSession

stubs = {{"left open": StandInTTNN(), "closed first": StandInTTNN()}}
atexit.register(lambda: print(json.dumps({{name: [entry[1] for entry in stub.calls("close")]
                                          for name, stub in stubs.items()}})))
for stub in stubs.values():
    session = DeviceSession()
    session.open(lambda stack: stack.enter_context(open_mesh(stub, mesh_shape=(1, 1), l1_small_size=0,
                                                             trace_region_size=0)))
session.close()
"""


@pytest.mark.slow
def test_interpreter_exit_closes_a_session_left_open_and_not_one_already_closed():
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run([sys.executable, "-c", AT_EXIT.format(tests=str(Path(__file__).parent))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert json.loads(done.stdout) == {"left open": ["mesh"], "closed first": ["mesh"]}


# --- several chips, one process per PCIe chip (--tt-parallel processes) ---------------------------------------

@pytest.mark.slow
def test_one_process_per_pcie_chip_makes_the_same_frames(tiny_host, tmp_path, monkeypatch):
    from helpers import MOCK_ENV
    from machine_helpers import CLUSTERS

    from ttlesson.backends.tt import create_tt
    from ttlesson.backends.tt.processes import TTProcessesBackend

    monkeypatch.setenv(MOCK_ENV, str(CLUSTERS / "p300.yaml"))  # two PCIe chips, found without ttnn
    monkeypatch.setenv("TTLESSON_TT_PARALLEL", "processes")
    assert isinstance(create_tt(SD14, devices="all"), TTProcessesBackend)
    board = storyboard.loads('["one", "two", "three"]')
    processes = TTProcessesBackend(SD14, devices="all", runtime_factory="standin_tt:standin_runtime")
    one, _ = standin_backend(tiny_host)
    with processes, one:
        assert processes.parallel == 2
        split = render(board, tmp_path / "processes", model="sd14", backend=processes, steps=4)
        single = render(board, tmp_path / "one", model="sd14", backend=one, steps=4)
    for index in range(3):
        name = manifest.frame_filename(index)
        assert sha256_file(split.out_dir / "frames" / name) == sha256_file(single.out_dir / "frames" / name)
    assert {record.device for record in split.manifest.frames.values()} == {"tt:0 (wormhole_b0)",
                                                                            "tt:1 (wormhole_b0)"}
    assert processes._workers == []  # closed: every worker told to close its chip, and gone
    processes.close()  # a second close does nothing


def test_an_unknown_tt_parallel_mode_is_one_sentence(monkeypatch):
    from ttlesson.backends.tt import parallel_mode

    monkeypatch.setenv("TTLESSON_TT_PARALLEL", "threads")
    with pytest.raises(BackendUnavailableError, match="TTLESSON_TT_PARALLEL='threads' is not understood; use submesh"):
        parallel_mode()


def test_frames_are_rounded_as_the_demo_rounds_its_bf16_output():
    """ttnn.to_torch gives bfloat16; the demo scales and clamps in bf16, then rounds: so does to_image."""
    from ttlesson.backends.tt.chip import to_image

    output = (torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(1)) * 2.2 - 1.1).to(torch.bfloat16)
    demo = (output / 2 + 0.5).clamp(0, 1)  # the demo's post-processing, step by step
    demo = (demo.detach().cpu().float().permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8")[0]
    assert np.array_equal(np.asarray(to_image(output)), demo)
    through_float = ((output.float() / 2 + 0.5).clamp(0, 1) * 255).round()[0].permute(1, 2, 0).to(torch.uint8)
    assert (through_float.numpy() != demo).mean() > 0.1  # converting first would change many pixels by one level


def test_verdicts_for_every_system_tt_metal_runs():
    from ttlesson.tenstorrent.arch import Arch
    from ttlesson.tenstorrent.presets import TTSystem, verdicts

    def shapes(arch, chips, shape):
        return {v.model: (v.supported, v.mesh_shape) for v in verdicts(TTSystem(arch, chips, shape))}

    assert shapes(Arch.WORMHOLE, 1, (1, 1)) == {"sd14": (True, (1, 1)), "sd35-large": (False, None)}
    assert shapes(Arch.WORMHOLE, 8, (2, 4)) == {"sd14": (True, (2, 4)), "sd35-large": (True, (2, 4))}
    assert shapes(Arch.WORMHOLE, 32, (8, 4)) == {"sd14": (True, (8, 4)), "sd35-large": (True, (4, 8))}
    assert shapes(Arch.BLACKHOLE, 4, (2, 2)) == {"sd14": (True, (2, 2)), "sd35-large": (True, (1, 4))}
    assert shapes(Arch.BLACKHOLE, 8, (2, 4)) == {"sd14": (True, (2, 4)), "sd35-large": (False, None)}
    assert all(not v.supported for v in verdicts(None))
    galaxy_sd14 = verdicts(TTSystem(Arch.WORMHOLE, 32, (8, 4)))[0].why
    assert "TT_METAL_CORE_GRID_OVERRIDE_TODEPRECATE=7,7" in galaxy_sd14


def test_a_galaxy_is_recognised_before_ttnn_starts(tmp_path, monkeypatch):
    from helpers import MOCK_ENV
    from machine_helpers import CLUSTERS, make_sysfs

    from ttlesson.backends.tt.device import galaxy_arch_before_ttnn
    from ttlesson.tenstorrent.arch import Arch

    monkeypatch.delenv(MOCK_ENV, raising=False)
    galaxy = make_sysfs(tmp_path / "glx", ["galaxy-wormhole"] * 32) / "class" / "tenstorrent"
    assert galaxy_arch_before_ttnn(galaxy) == Arch.WORMHOLE
    assert galaxy_arch_before_ttnn(make_sysfs(tmp_path / "n300", ["n300"]) / "class" / "tenstorrent") is None
    for descriptor, arch in [("galaxy_bh.yaml", Arch.BLACKHOLE), ("galaxy_6u.yaml", Arch.WORMHOLE),
                             ("t3k.yaml", None)]:
        monkeypatch.setenv(MOCK_ENV, str(CLUSTERS / descriptor))
        assert galaxy_arch_before_ttnn() == arch
