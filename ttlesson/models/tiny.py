"""The offline ``tiny`` model: a Stable-Diffusion-1.x-shaped pipeline with seeded random weights, built from
configs into the ttlesson cache once and loaded back with ``from_pretrained`` like any downloaded model.

Its own CLIP-style tokenizer is trained here on a short word list, its weights are drawn from one seeded
generator (so transformers 4 and 5 build the same model), and its text encoder's weights are stored with the
``text_model.`` prefix that both transformers versions read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from importlib import resources
from pathlib import Path

from .. import env
from ..fileio import current_umask
from .hub import quiet_hf_libraries

TINY_RECIPE_VERSION = 2  # bump when the tiny recipe changes, so a stale cached copy is not reused


def tiny_model_folder() -> Path:
    """Build the tiny pipeline once into the cache and return its folder; later calls reuse it."""
    folder = env.cache_root() / "models" / f"tiny-sd-v{TINY_RECIPE_VERSION}"
    if (folder / "model_index.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=folder.parent))
    staging.chmod(0o777 & ~current_umask())  # mkdtemp makes it private; the cache is an ordinary folder
    try:
        _build_tiny_pipeline(staging)
        try:
            os.rename(staging, folder)  # atomic: a concurrent builder's finished copy wins, ours is dropped
        except OSError:
            if not (folder / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _build_tiny_pipeline(folder: Path) -> None:
    quiet_hf_libraries()
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tokenizer_dir = folder / "tokenizer"
    vocab_size = _write_tiny_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=16,
        block_out_channels=(16, 16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=128,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, projection_dim=32,
    ))
    _reseed_matrices(text_encoder, seed=0)  # transformers 4 and 5 draw CLIP's initial weights differently
    # The same scheduler settings as CompVis/stable-diffusion-v1-4 and tt-metal's TtPNDMScheduler.
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    _prefix_text_encoder_keys(folder / "text_encoder")


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


def _write_tiny_tokenizer(folder: Path) -> int:
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
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }))
    return len(vocab)


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
