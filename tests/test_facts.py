"""Facts the lesson states in several places, each computed in one place and checked against what it is about:
download sizes, the cards SD 1.4 runs on, the sizes each backend makes, the expectations table, what a scaling
measurement says, and the lever a fix names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ttlesson import presenting
from ttlesson.backends.base import FrameRequest
from ttlesson.bench import this_machine as bench
from ttlesson.bench.this_machine import Scaling, ScalingPoint
from ttlesson.models import REGISTRY, about_gigabytes, hub
from ttlesson.notebook import next_steps, settings
from ttlesson.tenstorrent import boards, speeds

ROOT = Path(__file__).resolve().parents[1]


# --- download sizes ---------------------------------------------------------------------------------------------

def _parameters(module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


@pytest.mark.slow
def test_each_hub_models_weights_are_its_published_configs_parameters():
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    from ttlesson.bench.models import parameter_counts

    with torch.device("meta"):  # the published configs of the parts ttlesson/data/arch does not hold
        safety_checker = StableDiffusionSafetyChecker(CLIPConfig(
            text_config={}, projection_dim=768, vision_config={"hidden_size": 1024, "intermediate_size": 4096,
                                                               "num_attention_heads": 16, "num_hidden_layers": 24,
                                                               "patch_size": 14, "image_size": 224}))
        clip_l = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=768, intermediate_size=3072,
                                                            num_attention_heads=12, num_hidden_layers=12,
                                                            projection_dim=768))
        clip_g = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=1280, intermediate_size=5120,
                                                            num_attention_heads=20, num_hidden_layers=32,
                                                            projection_dim=1280))
        t5 = T5EncoderModel(T5Config(d_model=4096, d_ff=10240, num_layers=24, num_heads=64, d_kv=64,
                                     vocab_size=32128, feed_forward_proj="gated-gelu"))
    sd14, sd35 = parameter_counts("sd14"), parameter_counts("sd35-large")
    assert dict(REGISTRY["sd14"].weights.parameters) == {**sd14, "safety_checker": _parameters(safety_checker)}
    assert dict(REGISTRY["sd35-large"].weights.parameters) == {
        **sd35, "text_encoder": _parameters(clip_l), "text_encoder_2": _parameters(clip_g),
        "text_encoder_3": _parameters(t5)}
    assert REGISTRY["sd14"].download_size == "about 5.5 GB" and REGISTRY["sd35-large"].download_size == "about 27 GB"


def test_the_memory_estimate_and_the_download_are_worked_out_from_the_same_weights():
    from ttlesson.backends.torch.memory import estimate

    for name, stored in (("sd14", 4), ("sd35-large", 2)):
        weights = REGISTRY[name].weights
        loaded = sum(count for part, count in weights.parameters if part not in weights.unused)
        assert weights.stored_bytes == stored
        assert estimate(REGISTRY[name]).weights == loaded * 4  # float32 on the CPU
    assert REGISTRY["sd14"].weights.unused == ("safety_checker",)  # downloaded, never loaded


@pytest.mark.parametrize("size, text", [(5_482_000_000, "about 5.5 GB"), (27_445_000_000, "about 27 GB"),
                                        (600_000_000, "about 0.6 GB")])
def test_download_sizes_read_in_the_hubs_units(size, text):
    assert about_gigabytes(size) == text


def test_nothing_to_download_for_the_offline_models():
    assert REGISTRY["tiny"].download_bytes == REGISTRY["tiny-random"].download_bytes == 0


def _stated_downloads(text: str, model: str) -> list[str]:
    """Every "(about N GB" or "download is about N GB" that a sentence naming ``model`` says about it."""
    return [match.group(1) for sentence in re.split(r"(?<=[.!?])\s", " ".join(text.split())) if model in sentence
            for match in re.finditer(r"(?:\(|download is )(?:about )?([\d.–-]+ GB)", sentence)]


def _prose(path: Path) -> str:
    if path.suffix != ".ipynb":
        return path.read_text(encoding="utf-8")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown")


PROSE = ["README.md", *sorted(path.relative_to(ROOT).as_posix() for path in
                              [*(ROOT / "docs").glob("*.md"), *(ROOT / "notebooks").glob("*.ipynb")])]


@pytest.mark.parametrize("path", PROSE)
def test_the_docs_state_the_registrys_download_sizes(path):
    text = _prose(ROOT / path)
    for model, name in (("sd14", "SD 1.4"), ("sd35-large", "SD 3.5 Large")):
        for stated in _stated_downloads(text, name):
            assert f"about {stated}" == REGISTRY[model].download_size, (path, name, stated)


def test_the_doctor_and_the_sd35_plan_state_the_registrys_download_sizes(monkeypatch, tmp_path):
    from ttlesson.setup import doctor, hf

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hf, "cache_state", lambda repo: "no")
    assert doctor.check_model_disk().detail.endswith(f"SD 1.4's download is {REGISTRY['sd14'].download_size}")
    plan = next_steps.sd35_plan()
    assert any(REGISTRY["sd35-large"].download_size in need for need in plan.needs)


def test_a_fetch_reports_its_size_in_the_hubs_units(tmp_path):
    result = hub.FetchResult("sd14", tmp_path, 20, 5_480_867_580, 20, 60.0)
    assert "5.48 GB" in str(result)


# --- the cards SD 1.4 runs on -----------------------------------------------------------------------------------

def test_the_cards_sentence_follows_the_board_table():
    sentence = boards.sd14_cards_sentence()
    single, several = sentence.split(": ", 1)[1].split("; ", 1)
    for kind in boards.card_kinds():
        assert kind.family.upper() in (single if kind.chips == 1 else several), kind
    assert "N300" in several and "N300" not in single  # an N300 is two chips on one card
    assert {kind.family for kind in boards.card_kinds()} == {"n150", "n300", "p100", "p150", "p300"}


# --- the sizes each backend makes -------------------------------------------------------------------------------

def test_the_tt_backend_makes_the_sizes_it_is_said_to_make():
    from ttlesson.backends.tt.sd14 import sd14_problems

    sizes = settings.accepted_sizes()
    tt_sizes = [int(number) for number in re.findall(r"\d+", sizes["tt"].split("(")[0])]
    assert tt_sizes == [512] and "768x512" not in sizes["tt"]

    def problems(width, height):
        return sd14_problems(REGISTRY["sd14"], FrameRequest(prompt="a fair", seed=0, steps=50, guidance=7.5,
                                                            width=width, height=height))

    assert problems(512, 512) == []
    assert problems(768, 512)  # what notebook 01 used to offer: refused


def test_the_size_variable_is_described_from_the_backends():
    from ttlesson.inputs import parse_size

    rows = {variable: meaning for variable, _default, meaning in settings.variables()}
    sizes = settings.accepted_sizes()
    assert rows["TTLESSON_SIZE"] == (f"frame size: on the tt backend {sizes['tt']}; on the torch backend "
                                     f"{sizes['torch']}")
    assert parse_size("768x512") == (768, 512)  # the torch example works
    assert "<code>TTLESSON_SIZE</code>" in settings.current()._repr_html_()


# --- what to expect per board ------------------------------------------------------------------------------------

def test_the_expectations_show_published_figures_with_their_source():
    table = speeds.per_board()
    for row in table.rows:
        assert row.published == speeds.PUBLISHED[row.measured_on]
    text = str(table)
    assert "published by tt-metal" in text and speeds.PUBLISHED_SOURCE in text
    assert "×" not in text.splitlines()[0] and "ratio" not in text


def test_the_chart_references_still_come_from_the_same_figures():
    references = speeds.reference_speeds()
    published = {(ref.board, ref.seconds_per_image) for ref in references if ref.source == "tt-metal"}
    assert published == set(speeds.PUBLISHED.items())
    assert {(ref.board, ref.devices) for ref in references if ref.source == "lesson"} == {("N150", 1), ("N300", 2),
                                                                                     ("T3K", 8)}


# --- what a scaling measurement says -----------------------------------------------------------------------------

def _measured(device: str, one: float, two: float, identical: bool = True) -> Scaling:
    return Scaling([ScalingPoint(1, one, 10.0, device, ""), ScalingPoint(2, two, 12.0, f"2 workers on {device}", "")],
                   identical, model="tiny", width=128, height=128, steps=10)


def test_a_cpu_measurement_says_what_it_measured():
    result = _measured("cpu", 2.8, 1.0)
    assert result.verdict == ("2 workers made frames 2.8× slower than 1 here: on a CPU the workers share the same "
                              "cores. The frames were byte-identical for every device count.")
    assert "2.8× slower than 1" in result._repr_html_() and result.comparison in result._repr_html_()


@pytest.mark.parametrize("device, one, two, words", [
    ("tt:0 (wormhole_b0)", 0.2, 0.38, "2 chips made frames 1.9× faster than 1 here: each of the chips makes its own"),
    ("cuda:0 (NVIDIA H100)", 2.0, 2.02, "2 GPUs made frames about as fast as 1 here: the host"),
    ("cpu", 1.0, 1.5, "2 workers made frames 1.5× faster than 1 here: one worker left some of this CPU's cores idle"),
    ("cpu", 1.0, 0.0, "Too few frames were made to compare device counts."),
])
def test_each_measurement_is_read_for_its_devices(device, one, two, words):
    assert _measured(device, one, two).comparison.startswith(words)


def test_a_saved_measurement_is_read_again(tmp_path):
    result = _measured("cpu", 2.8, 1.0)
    assert bench.Scaling.from_dict(result.to_dict()).verdict == result.verdict


# --- the lever a fix names ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("notebook, model, steps", [(False, "--model tiny", "--steps 20"),
                                                    (True, "TTLESSON_MODEL=tiny", "TTLESSON_STEPS=20")])
def test_fixes_name_the_lever_where_the_learner_is(monkeypatch, notebook, model, steps):
    from ttlesson.backends.tt.device import no_device

    monkeypatch.setattr(presenting, "in_notebook", lambda: notebook)
    assert presenting.lever("model", "tiny") == model
    warning = speeds.long_run_warning(4.0, 50, 10, "the CPU")
    assert steps in warning and model in warning
    assert ("interrupt the kernel" in warning) is notebook
    assert hub._not_cached_message(REGISTRY["sd14"], "HF_HUB_OFFLINE is set").endswith(
        f"or use {model} to try the lesson offline.")
    assert presenting.lever("backend", "torch") in no_device()


def test_the_notebook_layer_and_the_levers_agree_on_the_variables():
    for name, (variable, _flag) in presenting.SETTINGS.items():
        assert settings.VARIABLES[name] == variable


# --- SD 3.5 Large: what instead ----------------------------------------------------------------------------------

def test_the_sd35_plan_offers_sd14_not_the_tiny_model(monkeypatch):
    from ttlesson.setup import hf

    monkeypatch.setattr(hf, "model_access", lambda model: hf.ModelAccess(model, "x", True, "list", "no", False, True))
    plan = next_steps.sd35_plan()
    if plan.runnable:
        pytest.skip("SD 3.5 Large runs here")
    words = str(plan)
    assert "tiny" not in words and "--model sd14" in plan.instead and "Instead:" in words
