"""The offline tiny models, written once into the ttlesson cache as diffusers folders and loaded back with
``from_pretrained`` like any downloaded model; the classes are SD 1.x's, so every path that runs SD 1.4 runs them.

* ``tiny`` learned from a few thousand procedural World's Fair scenes (``ttlesson.offline.scenes``, trained by
  ``ttlesson.offline.training``); its weights and tokenizer ship in ``ttlesson/data/tiny-sd/``.
* ``tiny-random`` is a smaller pipeline of the same kind with seeded random weights (drawn from one generator, so
  transformers 4 and 5 build the same model), for tests that need a pipeline in seconds.

Their CLIP-style tokenizer is trained here on a short word list; text encoder weights are stored with the
``text_model.`` prefix that both transformers versions read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections import Counter
from importlib import resources
from pathlib import Path

from .. import env
from ..errors import ModelNotAvailableError
from ..fileio import staging_folder
from .hub import quiet_hf_libraries

TINY_RECIPE_VERSION = 3  # bump when a tiny recipe changes, so a stale cached copy is not reused
TINY_MODELS = ("tiny", "tiny-random")
TINY_WEIGHTS_DIR = "tiny-sd"  # in ttlesson/data: model.safetensors, vocab.json, merges.txt

# The trained model's architecture (ttlesson.offline.training trains exactly this): 128×128 frames, 16×16×4 latents.
# Group norms span several channels: over one channel alone, a norm erases that channel's mean, and the
# decoder could no longer say what colour the sky is, nor the UNet how dark the night.
TINY_ARCHITECTURE = {
    "unet": dict(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64, 128),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, attention_head_dim=(1, 2, 4), norm_num_groups=8,
    ),
    "vae": dict(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=4,
        block_out_channels=(16, 32, 64, 64), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=128,
    ),
    "text_encoder": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=77, projection_dim=64),
}
# tiny-random: the recipe the project started with, kept small so a test gets a pipeline in seconds.
TINY_RANDOM_ARCHITECTURE = {
    "unet": dict(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32,
    ),
    "vae": dict(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=16,
        block_out_channels=(16, 16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=128,
    ),
    "text_encoder": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=77, projection_dim=32),
}


def tiny_model_folder(name: str = "tiny") -> Path:
    """Build the tiny pipeline ``name`` once into the cache and return its folder; later calls reuse it."""
    folder = _tiny_folder(name)
    if (folder / "model_index.json").is_file():
        return folder
    staging = staging_folder(folder.parent, "tiny")
    try:
        if name == "tiny-random":
            build_tiny_random_pipeline(staging)
        else:
            build_tiny_pipeline(staging, shipped_tiny_weights())
        try:
            os.rename(staging, folder)  # atomic: a concurrent builder's finished copy wins, ours is dropped
        except OSError:
            if not (folder / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def tiny_model_folder_if_built(name: str = "tiny") -> Path | None:
    """The tiny pipeline's folder in the cache, or None when it is not built there yet (nothing is built)."""
    folder = _tiny_folder(name)
    return folder if (folder / "model_index.json").is_file() else None


def rebuild_tiny_model_folder(name: str = "tiny") -> Path:
    """Build the tiny pipeline ``name`` again in place of a damaged copy (a truncated or missing file)."""
    folder = _tiny_folder(name)
    damaged = staging_folder(folder.parent, "tiny")
    with contextlib.suppress(FileNotFoundError):  # another process may have moved it already
        os.rename(folder, damaged / "damaged")
    shutil.rmtree(damaged, ignore_errors=True)
    return tiny_model_folder(name)


def shipped_tiny_weights() -> Path:
    """The folder of the trained tiny model's weights and tokenizer, as installed with the package."""
    return Path(str(resources.files("ttlesson.data").joinpath(TINY_WEIGHTS_DIR)))


def _tiny_folder(name: str) -> Path:
    return env.cache_root() / "models" / _tiny_folder_name(name)


def _tiny_folder_name(name: str) -> str:
    if name == "tiny-random":
        return f"tiny-random-sd-v{TINY_RECIPE_VERSION}"
    # The weights' own digest names the folder, so retrained weights never meet a stale cached copy.
    digest = hashlib.sha256((shipped_tiny_weights() / "model.safetensors").read_bytes()).hexdigest()
    return f"tiny-sd-v{TINY_RECIPE_VERSION}-{digest[:12]}"


def tiny_components(architecture: dict, tokenizer) -> dict:
    """A UNet, VAE and CLIP text encoder of the given architecture, with seeded initial weights."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**architecture["unet"])
    vae = AutoencoderKL(**architecture["vae"])
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **architecture["text_encoder"]))
    _reseed_matrices(text_encoder, seed=0)  # transformers 4 and 5 draw CLIP's initial weights differently
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder}


def tiny_scheduler():
    """The same PNDM settings as CompVis/stable-diffusion-v1-4 and tt-metal's TtPNDMScheduler."""
    from diffusers import PNDMScheduler

    return PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                         skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)


def build_tiny_pipeline(folder: Path, weights: Path) -> None:
    """Write the trained tiny pipeline into ``folder`` from a weights folder (``model.safetensors`` + tokenizer)."""
    quiet_hf_libraries()
    from transformers import CLIPTokenizer

    tokenizer_dir = folder / "tokenizer"
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(weights / name, tokenizer_dir / name)
    _write_tokenizer_config(tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    components = tiny_components(TINY_ARCHITECTURE, tokenizer)
    scaling_factor = load_tiny_weights(components, weights / "model.safetensors")
    components["vae"].register_to_config(scaling_factor=scaling_factor)
    _save_sd_pipeline(folder, tokenizer, components)


def build_tiny_random_pipeline(folder: Path) -> None:
    """Write the random-weight tiny pipeline into ``folder``, its tokenizer trained on the word list."""
    quiet_hf_libraries()
    from transformers import CLIPTokenizer

    write_tiny_tokenizer(folder / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    _save_sd_pipeline(folder, tokenizer, tiny_components(TINY_RANDOM_ARCHITECTURE, tokenizer))


def _save_sd_pipeline(folder: Path, tokenizer, components: dict) -> None:
    from diffusers import StableDiffusionPipeline

    # diffusers takes None for the safety checker and its feature extractor, though its annotations leave None out
    pipe = StableDiffusionPipeline(**components, tokenizer=tokenizer, scheduler=tiny_scheduler(), safety_checker=None,  # type: ignore[arg-type]
                                   feature_extractor=None, requires_safety_checker=False)  # type: ignore[arg-type]
    pipe.save_pretrained(folder, safe_serialization=True)
    _prefix_text_encoder_keys(folder / "text_encoder")


def save_tiny_weights(components: dict, path: Path, scaling_factor: float, metadata: dict | None = None) -> None:
    """Store the UNet, VAE and text encoder in one half-precision safetensors file, keys prefixed by component.

    The text encoder's keys are stored in the Hub layout (``text_model.*``) whatever transformers wrote them.
    """
    from safetensors.torch import save_file

    state = {}
    for component, module in components.items():
        for key, value in module.state_dict().items():
            if component == "text_encoder" and not key.startswith("text_model."):
                key = f"text_model.{key}"
            if key.endswith("position_ids"):
                continue  # a buffer some transformers versions keep, rebuilt on load
            state[f"{component}.{key}"] = value.detach().to("cpu").half().contiguous()
    info = {"format": "pt", "vae_scaling_factor": repr(float(scaling_factor)), **(metadata or {})}
    save_file(state, path, metadata={key: str(value) for key, value in info.items()})


def load_tiny_weights(components: dict, path: Path) -> float:
    """Load ``save_tiny_weights``' file into freshly built components; returns the VAE's scaling factor.

    Every weight must find its place and every place its weight: anything else means the file and the
    architecture in this module disagree, and the model would silently draw noise.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    state = load_file(path)
    with safe_open(path, framework="pt") as handle:
        scaling_factor = float(handle.metadata()["vae_scaling_factor"])
    for component, module in components.items():
        own = module.state_dict()
        prefix = f"{component}."
        part = {}
        for key, value in state.items():
            if not key.startswith(prefix):
                continue
            key = key[len(prefix):]
            if key not in own and key.startswith("text_model."):
                key = key[len("text_model."):]  # transformers 5 keeps CLIP's weights without the prefix
            part[key] = value.float()
        missing = sorted(set(own) - set(part) - {k for k in own if k.endswith("position_ids")})
        unexpected = sorted(set(part) - set(own))
        if missing or unexpected:
            raise ModelNotAvailableError(
                f"{path} does not fit the tiny {component} ({len(missing)} weights missing, e.g. {missing[:2]}, "
                f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}); retrain it with ttlesson train-tiny.")
        module.load_state_dict(part, strict=False)
    return scaling_factor


def _reseed_matrices(module, seed: int) -> None:
    """Draw every weight matrix from one seeded generator, in name order, so any library version builds the same."""
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(module.named_parameters()):
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)


def _prefix_text_encoder_keys(folder: Path) -> None:
    """Store CLIPTextModel's weights as ``text_model.*``, the layout of Hub checkpoints.

    transformers 5 saves them without the prefix; transformers 4 (tt-metal's python_env) then loads none of them
    and silently starts from random weights. Both versions read the prefixed layout.
    """
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    state = load_file(path)
    if not all(key.startswith("text_model.") for key in state):
        save_file({key if key.startswith("text_model.") else f"text_model.{key}": value
                   for key, value in state.items()}, path, metadata={"format": "pt"})


def write_tiny_tokenizer(folder: Path) -> int:
    """Write a CLIP-style byte-level BPE tokenizer (vocab.json, merges.txt) trained on a short word list.

    Training merges the most frequent pair of symbols until every listed word is one token, so ordinary prompt
    words count as one token each, as they do in CLIP's real vocabulary; other words fall back to pieces.
    """
    base = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {token: i for i, token in enumerate(base + [b + "</w>" for b in base])}
    words = [list(word[:-1]) + [word[-1] + "</w>"] for word in _tiny_words()]
    merges: list[str] = []
    while True:
        pairs = Counter(pair for symbols in words for pair in zip(symbols, symbols[1:]))
        if not pairs:
            break
        (left, right), _ = max(pairs.items(), key=lambda item: (item[1], item[0]))
        merges.append(f"{left} {right}")
        vocab.setdefault(left + right, len(vocab))
        words = [_merge_pair(symbols, left, right) for symbols in words]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    _write_tokenizer_config(folder)
    return len(vocab)


def _write_tokenizer_config(folder: Path) -> None:
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }))


def _merge_pair(symbols: list[str], left: str, right: str) -> list[str]:
    merged, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == left and symbols[i + 1] == right:
            merged.append(left + right)
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return merged


def _tiny_words() -> list[str]:
    text = resources.files("ttlesson.data").joinpath("tiny_words.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable characters (the BPE's base alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))
