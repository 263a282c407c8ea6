"""The offline tiny model: how it is trained, and whether its frames show what their prompts name."""

import dataclasses
import json
from collections import Counter

import pytest
from helpers import call_cli, one_line_error
from safetensors import safe_open

from ttlesson import storyboard
from ttlesson.offline import judge, scenes, training
from ttlesson.render import render


def test_demo_prompts_are_balanced_and_name_what_they_are_labelled():
    prompts = judge.demo_prompts()
    assert len(prompts) == 96 and len({p.prompt for p in prompts}) == 96
    assert set(Counter(p.time for p in prompts).values()) == {24}
    assert set(Counter(p.structure for p in prompts).values()) == {16}
    for p in prompts:
        assert scenes.named_attributes(p.prompt) == {"time": p.time, "structure": p.structure, "palette": p.palette}


def test_the_shipped_judge_knows_scenes_it_never_saw():
    held_out = scenes.scenes(60, first_seed=30_000_000)
    accuracy = judge.judge_accuracy(judge.shipped_judge(), [s.draw() for s in held_out], held_out)
    assert min(accuracy.values()) >= 0.9, accuracy


def test_shipped_score_covers_every_demo_prompt():
    score = judge.shipped_score()
    assert len(score.frames) == 96 and set(score.accuracy) == set(scenes.ATTRIBUTES)
    assert [f["prompt"] for f in score.frames] == [p.prompt for p in judge.demo_prompts()]
    for name, value in score.accuracy.items():
        assert value == sum(f["judged"][name] == f["named"][name] for f in score.frames) / 96


def test_shipped_score_meets_the_acceptance_bar():
    score = judge.shipped_score()
    assert score.accuracy["time"] >= 0.8 and score.accuracy["structure"] >= 0.6


@pytest.mark.slow
def test_tiny_draws_the_time_of_day_and_structure_its_prompt_names(tiny_backend, tmp_path):
    prompts = judge.demo_prompts()[::12]  # two per time of day, eight structures and templates
    board = storyboard.loads(json.dumps([p.prompt for p in prompts]))
    result = render(board, tmp_path, model="tiny", backend=tiny_backend)
    from PIL import Image

    verdicts = judge.classify(judge.shipped_judge(), [Image.open(p) for p in result.frame_paths])
    times = sum(v["time"] == p.time for v, p in zip(verdicts, prompts))
    structures = sum(v["structure"] == p.structure for v, p in zip(verdicts, prompts))
    assert times >= 6 and structures >= 4, (verdicts, prompts)


@pytest.mark.slow
def test_night_frames_are_darker_than_day_frames(tiny_backend, tmp_path):
    import numpy as np
    from PIL import Image

    board = storyboard.loads(json.dumps(["Tenstorrent pavilion at night, illuminated dome"] * 3
                                        + ["Tenstorrent pavilion on a sunny day, futuristic dome architecture"] * 3))
    result = render(board, tmp_path, model="tiny", backend=tiny_backend)
    brightness = [np.asarray(Image.open(p), dtype=np.float32).mean() for p in result.frame_paths]
    assert max(brightness[:3]) < min(brightness[3:]) - 30, brightness


@pytest.mark.slow
def test_train_tiny_quick_makes_a_model_the_render_loop_uses(tmp_path):
    import torch

    threads = torch.get_num_threads()
    proc = call_cli("train-tiny", "--quick", "--out", tmp_path / "t")
    assert proc.returncode == 0, proc.stderr
    assert torch.get_num_threads() == threads  # training sets its own thread count and gives the old one back
    pipeline = proc.stdout.strip().splitlines()[-1]
    assert pipeline == str(tmp_path / "t" / "pipeline")
    assert "prompt following" in proc.stdout and "shipped tiny" in proc.stdout
    report = json.loads((tmp_path / "t" / "training.json").read_text())
    assert report["curve"]["vae"] and report["curve"]["text"] and report["curve"]["unet"]
    assert report["times"]["unet"]["cpu_s"] > 0 and set(report["reading"]) == set(training.READ)
    assert set(json.loads((tmp_path / "t" / "score.json").read_text())["accuracy"]) == {"time", "structure", "palette"}
    frames = call_cli("render", "worlds-fair", "--model", pipeline, "--out", tmp_path / "r", "--steps", "2")
    assert frames.returncode == 0, frames.stderr


@pytest.mark.slow
def test_training_is_repeatable_from_its_seed(tmp_path):
    def weights(seed, name):
        plan = dataclasses.replace(training.TrainingPlan.quick(), seed=seed)
        result = training.train(tmp_path / name, plan, on_progress=lambda message: None)
        path = result.weights_dir / "model.safetensors"
        with safe_open(path, framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}

    first, again, other = weights(0, "a"), weights(0, "b"), weights(1, "c")
    assert first.keys() == again.keys() == other.keys()
    assert all((first[k] == again[k]).all() for k in first)
    assert not all((first[k] == other[k]).all() for k in first if k.startswith("unet."))


def test_the_text_encoder_learns_to_read_what_named_attributes_reads():
    answers = training._caption_answers([["at sunset, Unisphere in the background, futuristic dome architecture",
                                          "retro-futurism, crowds"]])
    unnamed = training._UNNAMED
    assert answers.tolist() == [[[scenes.TIMES.index("sunset"), scenes.STRUCTURES.index("dome"), unnamed,
                                  scenes.STRUCTURES.index("globe")], [unnamed] * 4]]


def test_train_tiny_keeps_a_model_trained_earlier(tmp_path):
    out = tmp_path / "t"
    (out / "pipeline").mkdir(parents=True)
    (out / "training.json").write_text("{}")
    line = one_line_error(call_cli("train-tiny", "--quick", "--out", out))
    assert str(out) in line and "--overwrite" in line and "pipeline, training.json" in line
    assert (out / "training.json").read_text() == "{}" and (out / "pipeline").is_dir()
    line = one_line_error(call_cli("train-tiny", "--quick", "--seed", "-1", "--out", tmp_path / "u"))
    assert line.endswith("error: --seed -1 is out of range; give a whole number from 0 to 2147483647."), line
    assert not (tmp_path / "u").exists()
