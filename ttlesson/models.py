"""The models a storyboard can be rendered with, and how their weights are found and loaded.

* ``sd14``: ``CompVis/stable-diffusion-v1-4`` at tt-metal's demo settings (512×512, PNDM, 50 steps, guidance 7.5).
* ``sd35-large``: ``stabilityai/stable-diffusion-3.5-large`` (1024×1024, 28 steps; gated on the Hub).
* ``tiny``: a Stable-Diffusion-1.x-shaped pipeline with seeded random weights, built offline from configs,
  saved once to the ttlesson cache and loaded back with ``from_pretrained`` like any downloaded model.
  Its frames are coloured noise: it exists so the whole path runs anywhere in seconds.
* a local folder holding a diffusers pipeline (``model_index.json``).

Hub weights go through huggingface_hub's cache; when they are not cached and cannot be downloaded, the error
names the model and the fix.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import ModelNotAvailableError
from .fileio import current_umask

TINY_RECIPE_VERSION = 2  # bump when the tiny recipe changes, so a stale cached copy is not reused


@dataclass(frozen=True)
class ModelSpec:
    """A model and the settings its frames are made with unless the user asks otherwise."""

    name: str
    source: str  # Hub repository id, or a local folder
    family: str  # "sd1" (UNet, CLIP text encoder) or "sd3" (MMDiT)
    width: int
    height: int
    steps: int
    guidance: float
    gated: bool = False

    @property
    def is_local(self) -> bool:
        return self.name == "tiny" or Path(self.source).is_dir()

    @property
    def hub_url(self) -> str:
        return f"https://huggingface.co/{self.source}"


REGISTRY: dict[str, ModelSpec] = {
    "sd14": ModelSpec("sd14", "CompVis/stable-diffusion-v1-4", "sd1", 512, 512, 50, 7.5),
    "sd35-large": ModelSpec("sd35-large", "stabilityai/stable-diffusion-3.5-large", "sd3", 1024, 1024, 28, 3.5,
                            gated=True),
    "tiny": ModelSpec("tiny", "tiny", "sd1", 128, 128, 10, 7.5),
}


def resolve(name_or_path: str | os.PathLike) -> ModelSpec:
    """The spec for a registry name (``sd14``, ``sd35-large``, ``tiny``) or a local diffusers folder."""
    key = str(name_or_path)
    if key in REGISTRY:
        return REGISTRY[key]
    folder = Path(os.path.expanduser(key))
    if (folder / "model_index.json").is_file():
        return _spec_for_folder(folder)
    if folder.exists():
        raise ModelNotAvailableError(f"{key!r} is not a diffusers pipeline folder (it has no model_index.json); "
                                     f"give a folder saved with save_pretrained, or one of: {', '.join(REGISTRY)}.")
    raise ModelNotAvailableError(f"Unknown model {key!r}; use one of {', '.join(REGISTRY)}, "
                                 "or the path of a local diffusers pipeline folder.")


def cache_root() -> Path:
    """Where ttlesson keeps what it builds (``$TTLESSON_CACHE``, else ``$XDG_CACHE_HOME/ttlesson``)."""
    if os.environ.get("TTLESSON_CACHE"):
        return Path(os.environ["TTLESSON_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "ttlesson"


def local_folder(spec: ModelSpec) -> Path:
    """A folder holding the model's diffusers files: built (tiny), given (local path) or from the Hub cache."""
    if spec.name == "tiny":
        return tiny_model_folder()
    if Path(spec.source).is_dir():
        return Path(spec.source)
    return _hub_snapshot(spec)


def load_pipeline(spec: ModelSpec):
    """Load the model's diffusers pipeline (float32, CPU) from its local folder, downloading it first if needed."""
    quiet_hf_libraries()
    import diffusers

    folder = local_folder(spec)
    extra = {"safety_checker": None, "requires_safety_checker": False} if spec.family == "sd1" else {}
    # tt-metal's demo runs without the safety checker; the torch path matches it so both make the same kind of frame.
    pipe = diffusers.DiffusionPipeline.from_pretrained(folder, **extra)
    pipe.set_progress_bar_config(disable=True)  # progress is ttlesson's own display, not a second bar
    return pipe


def quiet_hf_libraries() -> None:
    """Keep transformers' and diffusers' own info logs and progress bars out of the lesson's display."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()


def _spec_for_folder(folder: Path) -> ModelSpec:
    index = _read_model_index(folder)
    family = "sd3" if "StableDiffusion3" in index["_class_name"] else "sd1"
    size = _native_size(folder)
    steps, guidance = (28, 3.5) if family == "sd3" else (50, 7.5)
    return ModelSpec(str(folder.resolve()), str(folder.resolve()), family, size, size, steps, guidance)


PIPELINE_PARTS = (("unet", "transformer"), ("vae",), ("scheduler",))  # every SD pipeline has one of each


def _read_model_index(folder: Path) -> dict:
    """``model_index.json`` checked: an object naming its pipeline class and components that are in the folder."""
    path = folder / "model_index.json"
    fix = "give a folder saved with the pipeline's save_pretrained, or one of: " + ", ".join(REGISTRY)

    def refuse(why: str) -> ModelNotAvailableError:
        return ModelNotAvailableError(f"{path} {why}; {fix}.")

    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise refuse(f"cannot be read ({getattr(err, 'strerror', None) or err})") from None
    except RecursionError:
        raise refuse("is nested too deeply to be a pipeline index") from None
    except ValueError as err:
        raise refuse(f"is not valid JSON ({str(err).split(':')[0]})") from None
    if not isinstance(index, dict):
        raise refuse("is not a JSON object, so not a diffusers pipeline index")
    if not isinstance(index.get("_class_name"), str):
        raise refuse('has no "_class_name" naming the pipeline class')
    components = {key: value for key, value in index.items() if not key.startswith("_")}
    for alternatives in PIPELINE_PARTS:
        present = [name for name in alternatives if _listed(components.get(name))]
        if not present:
            raise refuse(f"lists no {' or '.join(alternatives)} component")
        for name in present:
            if not (folder / name).is_dir():
                raise refuse(f"lists a {name} component but the folder has no {name}/ subfolder")
    return index


def _listed(value: object) -> bool:
    """A component entry as diffusers writes it: [library, class name]."""
    return isinstance(value, list) and len(value) == 2 and all(isinstance(part, str) for part in value)


def _native_size(folder: Path) -> int:
    def config(component: str) -> dict:
        path = folder / component / "config.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (OSError, ValueError, RecursionError):
            raise ModelNotAvailableError(f"{path} is not a readable JSON config; give a folder saved with "
                                         "save_pretrained.") from None
        return data if isinstance(data, dict) else {}

    blocks = config("vae").get("block_out_channels", [0, 0, 0, 0])
    vae_blocks = len(blocks) if isinstance(blocks, list) and 1 <= len(blocks) <= 8 else 4
    sample = config("unet").get("sample_size") or config("transformer").get("sample_size") or 64
    sample = sample[0] if isinstance(sample, list) and sample else sample
    if isinstance(sample, bool) or not isinstance(sample, int) or not 8 <= sample <= 1024:
        sample = 64
    return min(8192, int(sample) * 2 ** (vae_blocks - 1)) // 8 * 8


# --- Hub ---------------------------------------------------------------------------------------------------

def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hub_snapshot(spec: ModelSpec) -> Path:
    import diffusers

    try:
        return Path(diffusers.DiffusionPipeline.download(spec.source, local_files_only=True))
    except Exception:  # not (completely) cached: fall through to a download
        pass
    if _hub_offline():
        raise ModelNotAvailableError(_not_cached_message(spec, "HF_HUB_OFFLINE is set"))
    try:
        return Path(diffusers.DiffusionPipeline.download(spec.source))
    except Exception as err:  # huggingface_hub, requests and httpx raise many types; the fix depends on which
        raise ModelNotAvailableError(_download_failure_message(spec, err)) from None


def _not_cached_message(spec: ModelSpec, why: str) -> str:
    login = " after accepting its licence on the Hub and logging in (ttlesson auth login)" if spec.gated else ""
    return (f"The weights of {spec.source} ({spec.name}) are not in the Hugging Face cache and {why}; "
            f"download them on a connected machine{login}, or use --model tiny to try the lesson offline.")


def _download_failure_message(spec: ModelSpec, err: Exception) -> str:
    kind = type(err).__name__
    if "Gated" in kind or (spec.gated and "401" in str(err)):
        return (f"{spec.source} is gated on the Hugging Face Hub: accept its licence at {spec.hub_url} and log "
                "in (ttlesson auth login), or use --model sd14, which needs no login.")
    if "RepositoryNotFound" in kind:
        return f"The Hub has no model {spec.source!r} (or it is private); check the name, or use --model sd14."
    return _not_cached_message(spec, "the Hub could not be reached")


# --- the offline tiny model --------------------------------------------------------------------------------

def tiny_model_folder() -> Path:
    """Build the tiny pipeline once into the cache and return its folder; later calls reuse it."""
    folder = cache_root() / "models" / f"tiny-sd-v{TINY_RECIPE_VERSION}"
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
