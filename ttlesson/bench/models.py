"""Full-size architectures built from their published configs with seeded random weights.

Real-size timings need the real shapes, not the real weights: ``ttlesson bench --arch-only`` builds SD 1.4
(UNet, VAE, CLIP text encoder) or SD 3.5 Large's MMDiT and VAE from the config values published with the
checkpoints (``ttlesson/data/arch/*.json``), so the work per step is the real work and nothing is downloaded.
The pictures are noise.
"""

from __future__ import annotations

import json
from importlib import resources

from ..errors import TTLessonError

ARCH_MODELS = ("sd14", "sd35-large")


def published_config(name: str) -> dict:
    """The published configs of ``name`` (``sd14`` or ``sd35-large``) as one dictionary, by component."""
    if name not in ARCH_MODELS:
        raise TTLessonError(f"--arch-only builds {', '.join(ARCH_MODELS)} from their published configs, not "
                            f"{name!r}; give --model sd14 or --model sd35-large.")
    text = resources.files("ttlesson.data").joinpath("arch").joinpath(f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


def _arguments(config: dict) -> dict:
    return {key: value for key, value in config.items() if not key.startswith("_")}


def parameter_counts(name: str) -> dict[str, int]:
    """Parameters per component, counted on torch's meta device (no memory, no time)."""
    import torch

    with torch.device("meta"):
        return {part: sum(p.numel() for p in module.parameters())
                for part, module in _modules(name, with_text_encoder=True).items()}


def _modules(name: str, with_text_encoder: bool) -> dict:
    from diffusers import AutoencoderKL, SD3Transformer2DModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    config = published_config(name)
    if name == "sd35-large":
        return {"transformer": SD3Transformer2DModel(**_arguments(config["transformer"])),
                "vae": AutoencoderKL(**_arguments(config["vae"]))}
    modules = {"unet": UNet2DConditionModel(**_arguments(config["unet"])),
               "vae": AutoencoderKL(**_arguments(config["vae"]))}
    if with_text_encoder:
        modules["text_encoder"] = CLIPTextModel(CLIPTextConfig(**_arguments(config["text_encoder"])))
    return modules


def build_sd14(seed: int = 0):
    """SD 1.4's diffusers pipeline (float32, CPU) with the published architecture and seeded random weights.

    The tokenizer is the offline tiny model's (CLIP's 49,408-token vocabulary cannot be downloaded here); its
    ids fit the real embedding table, and every prompt is padded to the real 77 tokens, so the work is the same.
    """
    import torch
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    from ..models.hub import quiet_hf_libraries
    from ..models.tiny import tiny_model_folder

    quiet_hf_libraries()
    torch.manual_seed(seed)
    modules = _modules("sd14", with_text_encoder=True)
    for module in modules.values():
        module.eval().requires_grad_(False)
    scheduler = PNDMScheduler.from_config(published_config("sd14")["scheduler"])  # as from_pretrained reads it
    tokenizer = CLIPTokenizer.from_pretrained(tiny_model_folder() / "tokenizer")
    # diffusers takes None for the safety checker and its feature extractor, though its annotations leave None out
    pipe = StableDiffusionPipeline(**modules, tokenizer=tokenizer, scheduler=scheduler, safety_checker=None,  # type: ignore[arg-type]
                                   feature_extractor=None, requires_safety_checker=False)  # type: ignore[arg-type]
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_sd35_parts(seed: int = 0, dtype_name: str = "bfloat16") -> dict:
    """SD 3.5 Large's MMDiT (in ``dtype_name``) and VAE (float32) with seeded random weights."""
    import torch

    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype_name))  # build in place: 8 billion float32 weights need 32 GB
    try:
        transformer = _modules("sd35-large", with_text_encoder=False)["transformer"]
    finally:
        torch.set_default_dtype(previous)
    vae = _modules("sd35-large", with_text_encoder=False)["vae"]
    return {"transformer": transformer.eval().requires_grad_(False), "vae": vae.eval().requires_grad_(False)}


def bytes_needed(name: str, dtype_name: str = "float32") -> int:
    """Memory the architecture's weights take in ``dtype_name`` (the SD 3.5 MMDiT) or float32 (the rest)."""
    counts = published_config(name)["parameters"]
    width = {"float32": 4, "bfloat16": 2, "float16": 2}[dtype_name]
    big = "transformer" if name == "sd35-large" else "unet"
    return sum(count * (width if part == big else 4) for part, count in counts.items())


def memory_available() -> int:
    """Bytes the kernel says can be allocated without swapping (MemAvailable), or 0 when unknown."""
    from ..backends.torch.memory import meminfo

    return meminfo().get("MemAvailable", 0)
