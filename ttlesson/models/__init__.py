"""The models a storyboard can be rendered with, and how their weights are found and loaded.

* ``sd14``: ``CompVis/stable-diffusion-v1-4`` at tt-metal's demo settings (512×512, PNDM, 50 steps, guidance 7.5).
* ``sd35-large``: ``stabilityai/stable-diffusion-3.5-large`` (1024×1024, 28 steps; gated on the Hub).
* ``tiny``: a small Stable-Diffusion-1.x pipeline (CLIP text encoder, UNet, VAE, PNDM) that learned from a few
  thousand procedural World's Fair scenes (``ttlesson.offline.training``); its weights ship with the package (``tiny``).
  Its frames show the time of day, structure and palette a prompt names, crudely.
* ``tiny-random``: the same kind of pipeline, smaller, with seeded random weights built from configs: coloured
  noise in seconds, for tests that need any pipeline.
* a local folder holding a diffusers pipeline (``model_index.json``).

Hub weights go through huggingface_hub's cache; when they are not cached and cannot be downloaded, the error
names the model and the fix.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ModelNotAvailableError
from .hub import hub_snapshot, quiet_hf_libraries
from .tiny import TINY_MODELS

HUB_FILES_BYTES = 2_000_000  # a Hub pipeline's tokenizers and configs, beside its weights


@dataclass(frozen=True)
class Weights:
    """A Hub model's weights, the one fact its download size and its memory estimate are both worked out from: each
    component's parameters (counted from the published configs on torch's meta device, ``tests/test_facts.py``) and
    the bytes the Hub's files store per parameter."""

    parameters: tuple[tuple[str, int], ...]  # (component, parameters)
    stored_bytes: int  # 4: float32 files; 2: 16-bit files
    unused: tuple[str, ...] = ()  # downloaded by diffusers, never loaded by ttlesson (SD 1.4's safety checker)

    @property
    def download_bytes(self) -> int:
        """What diffusers' ``DiffusionPipeline.download`` fetches: every component's safetensors, no variant."""
        return sum(count for _, count in self.parameters) * self.stored_bytes + HUB_FILES_BYTES

    @property
    def float32_bytes(self) -> int:
        """The loaded components' weights in float32, as the torch backend holds them on the CPU."""
        return sum(count for name, count in self.parameters if name not in self.unused) * 4


@dataclass(frozen=True)
class ModelSpec:
    """A model and the settings its frames are made with unless the user asks otherwise."""

    name: str
    source: str  # Hub repository id, or a local folder
    family: Literal["sd1", "sd3"]  # sd1: UNet and CLIP text encoder; sd3: MMDiT
    width: int
    height: int
    steps: int
    guidance: float
    gated: bool = False
    weights: Weights | None = None  # a Hub model's; None: nothing to download (the tiny models, a local folder)

    @property
    def download_bytes(self) -> int:
        """What the first run (or ``ttlesson fetch``) puts in the Hugging Face cache; 0: nothing."""
        return self.weights.download_bytes if self.weights else 0

    @property
    def download_size(self) -> str:
        """The download in words: ``about 5.5 GB``."""
        return about_gigabytes(self.download_bytes)

    @property
    def is_local(self) -> bool:
        return self.name in TINY_MODELS or Path(self.source).is_dir()

    @property
    def hub_url(self) -> str:
        return f"https://huggingface.co/{self.source}"


SD14_WEIGHTS = Weights(
    (("unet", 859_520_964), ("safety_checker", 303_981_588), ("text_encoder", 123_060_480), ("vae", 83_653_863)),
    stored_bytes=4, unused=("safety_checker",))
SD35_LARGE_WEIGHTS = Weights(
    (("transformer", 8_056_627_520), ("text_encoder_3", 4_762_310_656), ("text_encoder_2", 694_659_840),
     ("text_encoder", 123_650_304), ("vae", 83_819_683)),  # MMDiT, T5-XXL, OpenCLIP bigG, CLIP-L, VAE
    stored_bytes=2)

REGISTRY: dict[str, ModelSpec] = {
    "sd14": ModelSpec("sd14", "CompVis/stable-diffusion-v1-4", "sd1", 512, 512, 50, 7.5, weights=SD14_WEIGHTS),
    "sd35-large": ModelSpec("sd35-large", "stabilityai/stable-diffusion-3.5-large", "sd3", 1024, 1024, 28, 3.5,
                            gated=True, weights=SD35_LARGE_WEIGHTS),
    "tiny": ModelSpec("tiny", "tiny", "sd1", 128, 128, 10, 2.5),  # its best guidance: docs/offline-model.md
    "tiny-random": ModelSpec("tiny-random", "tiny-random", "sd1", 128, 128, 10, 7.5),
}


def about_gigabytes(size_bytes: int) -> str:
    """``5_482_000_000`` → ``about 5.5 GB``: decimal gigabytes, as the Hub shows file sizes; whole ones from 10 GB."""
    gigabytes = size_bytes / 1e9
    return f"about {gigabytes:.1f} GB" if gigabytes < 10 else f"about {gigabytes:.0f} GB"


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


def local_folder(spec: ModelSpec) -> Path:
    """A folder holding the model's diffusers files: built (tiny), given (local path) or from the Hub cache."""
    if spec.name in TINY_MODELS:
        from .tiny import tiny_model_folder

        return tiny_model_folder(spec.name)
    if Path(spec.source).is_dir():
        return Path(spec.source)
    return hub_snapshot(spec)


def load_pipeline(spec: ModelSpec):
    """Load the model's diffusers pipeline (float32, CPU) from its local folder, downloading it first if needed."""
    folder = local_folder(spec)  # first: a model that cannot be had is refused before the libraries load
    quiet_hf_libraries()
    import diffusers

    extra = {"safety_checker": None, "requires_safety_checker": False} if spec.family == "sd1" else {}
    # tt-metal's demo runs without the safety checker; the torch path matches it so both make the same kind of frame.
    try:
        pipe = diffusers.DiffusionPipeline.from_pretrained(folder, **extra)
    except (OSError, ValueError) as err:  # diffusers' words for a missing or truncated file
        if spec.name not in TINY_MODELS:
            raise ModelNotAvailableError(_damaged_message(spec, folder, err)) from err
        from .tiny import rebuild_tiny_model_folder

        # The tiny model's folder is made from the package's own weights: a damaged copy is simply made again.
        pipe = diffusers.DiffusionPipeline.from_pretrained(rebuild_tiny_model_folder(spec.name), **extra)
    pipe.set_progress_bar_config(disable=True)  # progress is ttlesson's own display, not a second bar
    return pipe


def _damaged_message(spec: ModelSpec, folder: Path, err: Exception) -> str:
    reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    if Path(spec.source).is_dir():
        return (f"The model files in {folder} cannot be loaded ({reason}); save the pipeline there again "
                "(save_pretrained), or give another folder.")
    repo = folder.parents[1] if folder.parent.name == "snapshots" else folder  # the blobs too: they are reused
    return (f"The files of {spec.name} in {folder} cannot be loaded ({reason}); delete {repo} from the Hugging Face "
            "cache and run again to download them whole.")


def _spec_for_folder(folder: Path) -> ModelSpec:
    index = _read_model_index(folder)
    family: Literal["sd1", "sd3"] = "sd3" if "StableDiffusion3" in index["_class_name"] else "sd1"
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
        raise refuse(f"cannot be read ({getattr(err, 'strerror', None) or err})") from err
    except RecursionError as err:
        raise refuse("is nested too deeply to be a pipeline index") from err
    except ValueError as err:
        raise refuse(f"is not valid JSON ({str(err).split(':')[0]})") from err
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
        except (OSError, ValueError, RecursionError) as err:
            raise ModelNotAvailableError(f"{path} is not a readable JSON config; give a folder saved with "
                                         "save_pretrained.") from err
        return data if isinstance(data, dict) else {}

    blocks = config("vae").get("block_out_channels", [0, 0, 0, 0])
    vae_blocks = len(blocks) if isinstance(blocks, list) and 1 <= len(blocks) <= 8 else 4
    sample = config("unet").get("sample_size") or config("transformer").get("sample_size") or 64
    sample = sample[0] if isinstance(sample, list) and sample else sample
    if isinstance(sample, bool) or not isinstance(sample, int) or not 8 <= sample <= 1024:
        sample = 64
    return min(8192, int(sample) * 2 ** (vae_blocks - 1)) // 8 * 8
