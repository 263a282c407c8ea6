"""OpenVINO for the UNet and the VAE decoder of an SD 1.x diffusers pipeline, on the CPU.

The first use of a model converts both parts from torch to OpenVINO's IR (a minute and about twice the model's
size in memory for SD 1.4, with a progress bar) and caches the IR under ``<cache>/openvino/<key>/``; later loads
read it back. The IR keeps float32 weights; ``bf16=True`` asks OpenVINO to compute in bfloat16, which it does
natively on AVX512-BF16 and AMX CPUs. Each frame size gets its own static-shape compilation (OpenVINO is faster
on static shapes), made the first time that size is asked for.

The parts are swapped into the diffusers pipeline behind the interface it calls (``unet(...)``,
``vae.decode(...)``), so the pipeline's own loop, scheduler and guidance run unchanged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch  # this module is imported only by the OpenVINO path, which has torch loaded already

from ...fileio import staging_folder

IR_VERSION = 1  # bump when the conversion changes, so stale cached IR is not reused


def cache_dir(cache_key: str | None) -> Path:
    from ...env import cache_root

    digest = hashlib.sha256(f"{cache_key}|ir{IR_VERSION}|ov{_openvino_version()}".encode()).hexdigest()[:16]
    return cache_root() / "openvino" / digest


def use_openvino(pipe, *, bf16: bool, cache_key: str | None, label: str):
    """Swap the pipeline's UNet and VAE decoder for OpenVINO ones, converting them first if not cached yet."""
    import openvino as ov

    folder = cache_dir(cache_key)
    if not (folder / "vae_decoder.xml").is_file():
        _convert(pipe, folder, label)
    core = ov.Core()
    from ...machine.compute import physical_cores

    config = {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32", "INFERENCE_NUM_THREADS": physical_cores(),
              "PERFORMANCE_HINT": "LATENCY"}
    pipe.unet = OpenVinoUNet(_Compiled(folder / "unet.xml", core, config), pipe.unet.config)
    pipe.vae = OpenVinoVAE(_Compiled(folder / "vae_decoder.xml", core, config), pipe.vae.config)
    return pipe


def _convert(pipe, folder: Path, label: str) -> None:
    """Trace the UNet and the VAE decoder into OpenVINO IR in ``folder``, atomically."""
    import openvino as ov
    from tqdm.auto import tqdm

    staging = staging_folder(folder.parent, "ov")
    unet, vae = pipe.unet, pipe.vae
    latent = unet.config.sample_size if isinstance(unet.config.sample_size, int) else unet.config.sample_size[0]
    sample = torch.randn(2, unet.config.in_channels, latent, latent)
    context = torch.randn(2, pipe.tokenizer.model_max_length, unet.config.cross_attention_dim)
    parts = [("unet", _UNetForTrace(unet), (sample, torch.tensor([999.0, 999.0]), context)),
             ("vae_decoder", _DecoderForTrace(vae), (torch.randn(1, vae.config.latent_channels, latent, latent),))]
    bar = tqdm(total=2 * len(parts), desc=f"converting {label} to OpenVINO (once, then cached)", unit="part",
               leave=False)
    try:
        for name, module, example in parts:
            bar.set_postfix_str(f"tracing {name}")
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes about Python branches on shapes
                model = ov.convert_model(module.eval(), example_input=example)
            bar.update()
            bar.set_postfix_str(f"saving {name}")
            ov.save_model(model, staging / f"{name}.xml", compress_to_fp16=False)  # keep float32 weights
            del model
            bar.update()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        bar.close()
    try:
        os.rename(staging, folder)  # a concurrent converter's finished copy wins; ours is dropped
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (folder / "vae_decoder.xml").is_file():
            raise


def _openvino_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openvino")
    except PackageNotFoundError:
        return "none"


class _UNetForTrace(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]


class _DecoderForTrace(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latents):
        return self.vae.decode(latents, return_dict=False)[0]


class _Compiled:
    """One OpenVINO model compiled per input shape, on first use. The IR is read again for each new shape and
    let go after compiling, so memory holds the compiled weights once, not the IR's copy as well."""

    def __init__(self, path: Path, core, config: dict):
        self.path, self.core, self.config = path, core, config
        self.requests: dict[tuple, Any] = {}  # OpenVINO infer requests, by input shapes

    def __call__(self, *arrays):
        shapes = tuple(tuple(array.shape) for array in arrays)
        request = self.requests.get(shapes)
        if request is None:
            model = self.core.read_model(self.path)
            model.reshape({index: list(shape) for index, shape in enumerate(shapes)})
            request = self.core.compile_model(model, "CPU", self.config).create_infer_request()
            del model
            self.requests[shapes] = request
        return request.infer(list(arrays))[0]


class _OpenVinoModule(torch.nn.Module):
    """A compiled OpenVINO model in a torch module's clothes: diffusers reads its config, dtype and device."""

    def __init__(self, compiled: _Compiled, config):
        super().__init__()
        self.config = config
        self.compiled = compiled
        self.register_buffer("_where", torch.zeros(0), persistent=False)  # device and dtype for diffusers

    @property
    def dtype(self):
        return self._where.dtype

    @property
    def device(self):
        return self._where.device


class OpenVinoUNet(_OpenVinoModule):
    """Called as diffusers calls its UNet; runs the OpenVINO model (float32 in and out)."""

    def forward(self, sample, timestep, encoder_hidden_states, return_dict: bool = False, **unused):
        timesteps = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(sample.shape[0])
        out = self.compiled(sample.float().numpy(), timesteps.contiguous().numpy(),
                            encoder_hidden_states.float().numpy())
        return (torch.from_numpy(out.copy()).to(sample.dtype),)


class OpenVinoVAE(_OpenVinoModule):
    """The VAE's ``decode`` as diffusers calls it, running the OpenVINO decoder."""

    def decode(self, latents, return_dict: bool = False, generator=None):
        out = torch.from_numpy(self.compiled(latents.float().numpy()).copy())
        return (out,)
