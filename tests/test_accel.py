"""The fast path: which numerics each machine gets, that they are recorded per frame, and that each setting
keeps its frames byte-reproducible (real diffusers pipeline and real OpenVINO on the offline tiny model)."""

import json

import pytest
from helpers import call_cli, one_line_error

from ttlesson import env, manifest, models, storyboard
from ttlesson.backends import FrameRequest
from ttlesson.backends.torch import precision as accel
from ttlesson.bench import models as arch
from ttlesson.errors import BackendUnavailableError, SettingsChangedError, TTLessonError
from ttlesson.fileio import sha256_file
from ttlesson.models import schedulers
from ttlesson.render import render

SD14, SD35, TINY = models.REGISTRY["sd14"], models.REGISTRY["sd35-large"], models.REGISTRY["tiny"]
BOARD = storyboard.loads('[{"prompt": "a harbour", "seed": 5}, {"prompt": "a harbour", "seed": 5}, "a pier"]')
openvino_present = pytest.mark.skipif(not accel.openvino_installed(), reason="the openvino extra is not installed")


def shas(out):
    return [sha256_file(p) for p in sorted(manifest.frames_dir(out).glob("*.png"))]


@pytest.mark.parametrize("spec,device,bf16,openvino,expected", [
    (SD14, "cpu", True, True, "openvino-bf16"),
    (SD14, "cpu", True, False, "bfloat16"),
    (SD14, "cpu", False, True, "openvino-f32"),
    (SD14, "cpu", False, False, "float32"),
    (SD35, "cpu", True, True, "bfloat16"),
    (SD14, "cuda", False, True, "float16"),
    (SD35, "cuda", False, False, "bfloat16"),
    (TINY, "cpu", True, True, "float32"),
    (TINY, "cuda", False, False, "float32"),
    (SD14, "tt", False, False, "tt-metal"),
])
def test_auto_picks_the_fast_path_each_machine_has(spec, device, bf16, openvino, expected):
    assert accel.resolve_precision("auto", spec, device, native_bf16=bf16, openvino=openvino) == expected


def test_explicit_choices_and_their_refusals():
    assert accel.resolve_precision("openvino", TINY, "cpu", native_bf16=False, openvino=True) == "openvino-f32"
    assert accel.resolve_precision("float16", SD14, "cuda", compile=True) == "float16, compiled"
    refusals = [
        (("openvino", SD14, "cpu"), {"openvino": False}, "needs the openvino package: pip install 'ttlesson"),
        (("openvino", SD14, "cuda"), {"openvino": True}, "runs on the CPU, not on cuda"),
        (("openvino", SD35, "cpu"), {"openvino": True}, "runs SD 1.x-shaped models, not sd35-large"),
        (("float16", SD14, "cpu"), {}, "float16 runs on CUDA GPUs only"),
        (("bfloat16", SD14, "tt"), {}, "tt backend runs tt-metal's own numerics"),
        (("fast", SD14, "cpu"), {}, "Precision 'fast' is not one ttlesson knows"),
    ]
    for args, kwargs, message in refusals:
        with pytest.raises(BackendUnavailableError, match=message.replace("(", r"\(")):
            accel.resolve_precision(*args, **{"native_bf16": False, **kwargs})


@pytest.mark.slow
def test_gpu_path_tiles_the_vae_only_for_large_frames(tiny_backend):
    pipe = tiny_backend.pipe
    accel._gpu_memory_savers(pipe, TINY)  # what prepare_pipeline does on CUDA; the decision is device-free
    try:
        accel.vae_tiling_for(pipe, 512, 512)
        assert pipe.vae.use_tiling
        accel.vae_tiling_for(pipe, 256, 256)
        assert not pipe.vae.use_tiling
    finally:
        del pipe._ttlesson_tile_above
    attention = {type(p).__name__ for p in pipe.unet.attn_processors.values()}
    assert attention == {"AttnProcessor2_0"}  # fused scaled_dot_product_attention, diffusers' default


def test_manifest_records_scheduler_and_precision(rendered):
    result, _ = rendered
    entry = json.loads(result.manifest_path.read_text())["frames"][0]
    assert (entry["scheduler"], entry["precision"]) == ("pndm", "float32")


def test_frames_from_before_these_fields_are_kept(tmp_path, tiny_backend):
    board = storyboard.loads('["one"]')
    render(board, tmp_path, model="tiny", backend=tiny_backend, steps=3)
    data = json.loads(manifest.manifest_path(tmp_path).read_text())
    for entry in data["frames"]:
        del entry["scheduler"], entry["precision"]
    manifest.manifest_path(tmp_path).write_text(json.dumps(data))
    again = render(board, tmp_path, model="tiny", backend="torch", device="cpu", steps=3)
    assert again.kept == [0] and again.made == []


def test_dpm_solver_takes_fewer_steps_by_default_and_is_recorded(tmp_path, tiny_folder):
    board = storyboard.loads('["a pier"]')
    result = render(board, tmp_path / "dpm", model="tiny", device="cpu", scheduler="dpm-solver++")
    record = result.manifest.frames[0]
    assert (record.scheduler, record.steps) == ("dpm-solver++", schedulers.DPM_SOLVER_STEPS)
    pndm = render(board, tmp_path / "pndm", model="tiny", device="cpu", steps=schedulers.DPM_SOLVER_STEPS)
    assert shas(result.out_dir) != shas(pndm.out_dir)
    with pytest.raises(SettingsChangedError, match=r"scheduler 'dpm-solver\+\+' → 'pndm'"):
        render(board, tmp_path / "dpm", model="tiny", device="cpu", steps=schedulers.DPM_SOLVER_STEPS)


def test_schedulers_that_do_not_fit_are_refused():
    assert schedulers.resolve(None, SD14) == "pndm" and schedulers.resolve("default", SD35) == "flow-match-euler"
    with pytest.raises(TTLessonError, match="Scheduler flow-match-euler does not fit sd14; use one of default, "
                                            r"dpm-solver\+\+, pndm"):
        schedulers.resolve("flow-match-euler", SD14)
    with pytest.raises(TTLessonError, match="Scheduler 'euler-a' is not one ttlesson knows"):
        schedulers.resolve("euler-a", TINY)


def test_tt_backend_refuses_a_scheduler_tt_metal_lacks(tmp_path):
    from ttlesson.backends.tt.sd14 import TTSD14Backend
    from ttlesson.backends.tt.sd35 import TTSD35Backend

    request = FrameRequest("a pier", 0, 50, 7.5, 512, 512, None, "dpm-solver++")
    with pytest.raises(BackendUnavailableError, match=r"Scheduler dpm-solver\+\+ does not run on the tt backend, "
                                                      "which implements pndm only"):
        TTSD14Backend(SD14).check_scheduler(request)
    TTSD14Backend(SD14).check_scheduler(FrameRequest("a pier", 0, 50, 7.5, 512, 512, None, "pndm"))
    with pytest.raises(BackendUnavailableError, match="implements flow-match-euler only"):
        TTSD35Backend(SD35).check_scheduler(request)


def test_text_encoder_runs_once_per_distinct_prompt_and_pixels_do_not_change(tiny_backend):
    calls = []
    encoder = tiny_backend.pipe.text_encoder
    inner = encoder.forward
    encoder.forward = lambda *a, **k: calls.append(1) or inner(*a, **k)
    tiny_backend._prompts.clear()
    try:
        images = [tiny_backend.generate(FrameRequest(p, 3, 3, 7.5, 64, 64)) for p in ("a cat", "a cat", "a dog")]
    finally:
        del encoder.forward
    assert len(calls) == 4  # two distinct prompts, each with its (empty) negative prompt
    import torch

    plain = tiny_backend.pipe(prompt="a cat", num_inference_steps=3, guidance_scale=7.5, width=64, height=64,
                              generator=torch.Generator("cpu").manual_seed(3)).images[0]
    assert images[0].tobytes() == images[1].tobytes() == plain.tobytes()


@openvino_present
@pytest.mark.slow
def test_openvino_frames_are_reproducible_recorded_and_converted_once(tmp_path, tiny_folder, monkeypatch):
    from ttlesson.backends.torch import openvino as openvino_runtime

    first = render(BOARD, tmp_path / "a", model="tiny", device="cpu", steps=3, size=64, precision="openvino")
    expected = "openvino-bf16" if accel.cpu_has_native_bf16() else "openvino-f32"
    assert {r.precision for r in first.manifest.frames.values()} == {expected}
    converted = list((env.cache_root() / "openvino").iterdir())
    assert len(converted) == 1 and (converted[0] / "unet.xml").is_file()

    monkeypatch.setattr(openvino_runtime, "_convert", lambda *a: pytest.fail("converted a second time"))
    second = render(BOARD, tmp_path / "b", model="tiny", device="cpu", steps=3, size=64, precision="openvino")
    assert shas(first.out_dir) == shas(second.out_dir)
    assert shas(first.out_dir)[0] == shas(first.out_dir)[1]  # the same prompt and seed → the same frame

    plain = render(BOARD, tmp_path / "c", model="tiny", device="cpu", steps=3, size=64)
    assert plain.manifest.frames[0].precision == "float32" and shas(plain.out_dir) != shas(first.out_dir)
    with pytest.raises(SettingsChangedError, match="precision 'float32' → 'openvino-"):
        render(BOARD, tmp_path / "c", model="tiny", device="cpu", steps=3, size=64, precision="openvino")


def test_published_configs_build_the_published_sizes():
    counts = arch.parameter_counts("sd14")
    assert counts == arch.published_config("sd14")["parameters"]
    assert counts == {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
    assert arch.bytes_needed("sd35-large", "bfloat16") > 16 * 10 ** 9  # why it does not fit beside anything else


def test_unet_flops_are_counted_from_shapes():
    from ttlesson.bench.full_size import unet_flops

    config = arch.published_config("sd14")["unet"]
    at_512 = unet_flops(config, 2, 64, 64, 77, 768)
    assert 1.5e12 < at_512 < 1.7e12  # one guided step of SD 1.4 at 512×512: 1.6 TFLOP
    assert unet_flops(config, 1, 64, 64, 77, 768) * 2 == at_512


def test_cli_refuses_bad_speed_settings(tmp_path):
    line = one_line_error(call_cli("render", "worlds-fair", "--model", "tiny", "--out", tmp_path / "o",
                                  "--device", "cpu", "--precision", "float16"))
    assert "float16 runs on CUDA GPUs only" in line and not (tmp_path / "o").exists()
    line = one_line_error(call_cli("bench", "--compare", "diffusers-default"))
    assert "--compare needs --arch-only" in line
    line = one_line_error(call_cli("bench", "--arch-only", "--model", "tiny"))
    assert "--arch-only builds sd14, sd35-large from their published configs, not 'tiny'" in line


def test_sd35_architecture_is_refused_where_memory_does_not_allow(monkeypatch):
    from ttlesson.bench import full_size as bench_arch

    monkeypatch.setattr(arch, "memory_available", lambda: 8 * 2 ** 30)
    with pytest.raises(TTLessonError, match="SD 3.5 Large's MMDiT needs about 18 GiB in bfloat16 and this machine "
                                            "has 8 GiB available; free memory or use --model sd14"):
        bench_arch.run("sd35-large", size=1024, steps=1)
    with pytest.raises(TTLessonError, match="--compare runs diffusers' whole pipeline"):
        bench_arch.run("sd35-large", compare="diffusers-default")
