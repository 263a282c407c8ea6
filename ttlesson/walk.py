"""Keyframe walks: the frames between two storyboard prompts, and how each frame's starting noise is drawn.

A storyboard's frames are *keyframes*. With ``transition_frames`` K (storyboard-level, per keyframe, or
``--transition-frames``), K in-between frames are made between each keyframe and the next, as
stable-diffusion-videos does: the starting noise is the spherical interpolation (``slerp``) of the two
keyframes' noises, and the text embeddings (prompt and negative prompt) the linear interpolation (``lerp``) of
theirs, at weight ``ease(j / (K + 1))`` for the j-th in-between. Both are computed in float32 on the CPU, so a
walk is the same on every backend and device; keyframes are made exactly as without a walk, so a keyframe in a
walk is byte-identical to the same keyframe rendered alone.

Seed modes (``SEED_MODES``) say where each keyframe's noise comes from:

* ``per-frame``: keyframe k draws from its own seed (``--seed`` + k, or the storyboard's); the default;
* ``shared``: every keyframe draws from the one ``--seed`` (what tt-metal's demo does when it reuses its latents);
* ``mixed``: a base noise from ``--seed`` shared by every keyframe plus a per-frame part from its own seed,
  ``sqrt(1 - s) * base + sqrt(s) * own`` with ``s = --noise-mix`` (so the noise keeps unit variance); the
  keyframe whose own seed is the base seed (keyframe 0 by default) starts from the base noise itself.

Frames are numbered in order: n keyframes give ``n + sum(K)`` frames, none repeated at a boundary.

How far along its walk an in-between looks is measured by ``travel``: its mean pixel distance to the first
keyframe over the sum of its distances to both (0 looks like the first keyframe, 1 like the second). A walk that
travels climbs steadily; one that cuts jumps from near 0 to near 1 between two in-betweens. Which it does depends
on the model as much as on the walk: a model that learned an attribute only as separate kinds (the offline
``tiny`` model knows four times of day and nothing between them) cuts from one kind to the other at some weight,
whatever the easing, the guidance or the seeds, while what it learned as a continuum (where and how big a
structure is, its shape, its colours) travels (docs/offline-model.md, "Walks").

Colour coherence (``colour="lab"``): each in-between's colours follow its two keyframes', by its weight.

A walk's keyframes keep their own colours: they are the story (a night keyframe stays a night keyframe). An
in-between at weight w from keyframe A to keyframe B has each of its CIE LAB channels (lightness and the two colour
axes) shifted and scaled so that its mean and its spread (standard deviation) are ``(1 - w)`` of A's plus ``w`` of
B's (``match_colours_between``). The frame keeps its own shapes and the shape of its own histogram; only its
brightness, contrast and colour cast move, in a straight line from A's to B's. For two bell-shaped distributions
this is exactly the interpolation along their quantiles (the one-dimensional Wasserstein geodesic), so half-way from
a bright day to a dark night is a frame half as bright everywhere, not half day pixels and half night pixels. An
in-between the model drew in the wrong light (a night frame between two day keyframes) is pulled back to its
keyframes' light, while a walk from day to night gets darker step by step.

Matching the whole histogram instead (scikit-image's ``match_histograms`` on the LAB channels, as Deforum does, and
as ttlesson did before) gives each pixel the value at its rank in the reference: where the frame's content differs
from the reference's (sand where the reference has grass), that paints false colours (green sand, cyan fringes in
the sky).

Everything is float64 numpy on the CPU: the same PNG bytes on every machine and run. ``histogram_distance``
measures how far two images' colour distributions are, ``mean_lightness`` how light a frame is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

Easing = Literal["linear", "ease-in-out"]
EASINGS = get_args(Easing)
SeedMode = Literal["per-frame", "shared", "mixed"]
SEED_MODES = get_args(SeedMode)
MAX_TRANSITION_FRAMES = 1000  # per gap; far beyond any useful walk
PARALLEL_DOT = 0.9995  # noises this close to parallel are lerped: slerp's division by sin(angle) is unstable


@dataclass(frozen=True)
class WalkFrame:
    """One frame of the walk: a keyframe (``keyframe`` is its storyboard index) or an in-between of ``pair`` at
    ``weight`` (0 is the first keyframe of the pair, 1 the second)."""

    index: int
    keyframe: int | None = None
    pair: tuple[int, int] | None = None
    weight: float = 0.0

    @property
    def is_keyframe(self) -> bool:
        return self.keyframe is not None


def ease(t: float, easing: str = "linear") -> float:
    """``t`` in [0, 1] eased: ``linear`` leaves it, ``ease-in-out`` slows both ends (cosine), endpoints exact."""
    if easing == "linear":
        return float(t)
    if easing == "ease-in-out":
        return 0.5 - 0.5 * math.cos(math.pi * t) if 0 < t < 1 else float(t)
    raise ValueError(f"unknown easing {easing!r}; use one of {', '.join(EASINGS)}")


def plan(gaps: list[int], easing: str = "linear") -> list[WalkFrame]:
    """The frames of a walk over ``len(gaps) + 1`` keyframes, ``gaps[k]`` in-betweens after keyframe k."""
    frames: list[WalkFrame] = []
    for keyframe in range(len(gaps) + 1):
        frames.append(WalkFrame(len(frames), keyframe=keyframe))
        if keyframe < len(gaps):
            between = gaps[keyframe]
            for j in range(1, between + 1):
                frames.append(WalkFrame(len(frames), pair=(keyframe, keyframe + 1),
                                        weight=round(ease(j / (between + 1), easing), 6)))
    return frames


def frame_count(keyframes: int, transition_frames: int) -> int:
    """n keyframes with K in-betweens in every gap: n + (n - 1) K."""
    return keyframes + max(0, keyframes - 1) * transition_frames


# --- the numbers, float32 on the CPU ---------------------------------------------------------------------------

def slerp(a, b, t: float, parallel_dot: float = PARALLEL_DOT):
    """Spherical interpolation of tensors ``a`` and ``b`` (any shape, seen as vectors) at ``t`` in [0, 1], in
    float32 on the CPU: ``a`` at 0 and ``b`` at 1 exactly; lerp where they are nearly parallel."""
    a, b, end = _on_cpu(a, b, t)
    if end is not None:
        return end
    norms = a.norm() * b.norm()
    dot = float((a.flatten() @ b.flatten()) / norms) if float(norms) > 0 else 1.0
    if abs(dot) > parallel_dot:
        return lerp(a, b, t)
    theta = math.acos(max(-1.0, min(1.0, dot)))
    sin_theta = math.sin(theta)
    return (math.sin((1 - t) * theta) / sin_theta) * a + (math.sin(t * theta) / sin_theta) * b


def lerp(a, b, t: float):
    """Linear interpolation in float32 on the CPU; ``a`` at 0 and ``b`` at 1 exactly."""
    a, b, end = _on_cpu(a, b, t)
    return end if end is not None else (1 - t) * a + t * b


def _on_cpu(a, b, t: float):
    """``a`` and ``b`` in float32 on the CPU, and the exact endpoint when ``t`` is 0 or 1 (else None)."""
    import torch

    a = a.detach().to("cpu", torch.float32)
    b = b.detach().to("cpu", torch.float32)
    return a, b, a.clone() if t == 0 else b.clone() if t == 1 else None


def seed_noise(seed: int, shape: tuple[int, ...]):
    """The standard normal noise a seed gives: the CPU-generator draw every ttlesson backend makes."""
    import torch

    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)


def keyframe_noise(seed: int, shape: tuple[int, ...], base_seed: int | None = None, mix: float = 0.0):
    """A keyframe's starting noise: its seed's draw, or (``base_seed`` given) the shared base plus its own part."""
    own = seed_noise(seed, shape)
    if base_seed is None or seed == base_seed:  # a keyframe on the base seed is the base noise itself
        return own
    return math.sqrt(1 - mix) * seed_noise(base_seed, shape) + math.sqrt(mix) * own


def needs_own_noise(request) -> bool:
    """Whether ``request``'s starting noise is anything but its seed's plain draw (an in-between, mixed noise)."""
    return request.to_seed is not None or request.noise_base is not None


def start_noise(request, shape: tuple[int, ...]):
    """The starting noise of a frame request (``ttlesson.backends.FrameRequest``), float32 on the CPU."""
    noise = keyframe_noise(request.seed, shape, request.noise_base, request.noise_mix)
    if request.to_seed is None:
        return noise
    other = keyframe_noise(request.to_seed, shape, request.noise_base, request.noise_mix)
    return slerp(noise, other, request.weight)


def blend_embeddings(request, encode: Callable[[str, str | None], tuple]) -> tuple:
    """The request's text embeddings: ``encode(prompt, negative_prompt)``'s tensors, or for an in-between those of
    both keyframes lerped in float32 on the CPU (``None`` entries, e.g. no negative without guidance, stay None)."""
    first = encode(request.prompt, request.negative_prompt)
    if request.to_seed is None:
        return first
    second = encode(request.to_prompt, request.to_negative_prompt)
    return tuple(None if x is None else lerp(x, y, request.weight) for x, y in zip(first, second))


# --- how far a walk travels -------------------------------------------------------------------------------------

def travel(frames) -> list[float]:
    """For frames ``first keyframe, in-betweens…, second keyframe`` (PIL images or arrays of one size), how far
    along the walk each looks: its mean absolute pixel distance to the first keyframe over the sum of its distances
    to both; 0.0 for the first keyframe, 1.0 for the second (0.0 throughout when the two keyframes are equal)."""
    import numpy as np

    images = [np.asarray(frame.convert("RGB") if hasattr(frame, "convert") else frame, dtype=np.float64)
              for frame in frames]
    if len(images) < 2:
        raise ValueError("travel needs the two keyframes of a walk, and the frames between them")
    first, second = images[0], images[-1]
    shares = []
    for image in images:
        to_first, to_second = float(np.abs(image - first).mean()), float(np.abs(image - second).mean())
        shares.append(to_first / (to_first + to_second) if to_first + to_second else 0.0)
    return shares


ColourMatch = Literal["lab"]
COLOUR_MATCHES = get_args(ColourMatch)
FLAT = 1e-6  # a channel whose spread is below this (one flat colour) is shifted, not scaled


def match_colours_between(image, first, second, weight: float):
    """``image`` (PIL) with each LAB channel's mean and spread moved to ``(1 - weight)`` of ``first``'s plus
    ``weight`` of ``second``'s (0: ``first``'s, 1: ``second``'s); a new RGB PIL image."""
    import numpy as np
    from PIL import Image

    weight = float(weight)
    if not 0 <= weight <= 1:
        raise ValueError(f"weight {weight!r} is not between 0 and 1")
    source, a, b = _lab(image), _lab(first), _lab(second)
    matched = np.empty_like(source)
    for channel in range(3):
        values = source[..., channel]
        mean = (1 - weight) * a[..., channel].mean() + weight * b[..., channel].mean()
        spread = (1 - weight) * a[..., channel].std() + weight * b[..., channel].std()
        own = values.std()
        scale = spread / own if own > FLAT else 1.0
        matched[..., channel] = (values - values.mean()) * scale + mean
    return _rgb_image(matched, Image)


def _lab(image):
    import numpy as np
    from skimage.color import rgb2lab

    return rgb2lab(np.asarray(image.convert("RGB"), dtype=np.float64) / 255)


def _rgb_image(lab, image_module):
    """LAB back to an 8-bit RGB image; values a match moved outside what LAB can say (L* beyond 0…100, a yellow
    too deep for its lightness) clipped first, as ``lab2rgb`` would, without its warning."""
    import numpy as np
    from skimage.color import lab2rgb

    lab = lab.copy()
    lab[..., 0] = np.clip(lab[..., 0], 0, 100)
    lab[..., 1:] = np.clip(lab[..., 1:], -128, 127)
    lab[..., 2] = np.minimum(lab[..., 2], 200 * (lab[..., 0] + 16) / 116)  # Z >= 0
    rgb = lab2rgb(lab)
    return image_module.fromarray(np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8), "RGB")


def histogram_distance(image, reference, bins: int = 32) -> float:
    """How far two images' colour distributions are: the mean over the L, a, b channels (CIE LAB, the space the
    match works in) of the total variation distance between their histograms; 0 for the same distribution, 1
    for disjoint ones."""
    import numpy as np

    a = _lab(image)
    b = _lab(reference)
    total = 0.0
    for channel, span in enumerate(((0, 100), (-128, 128), (-128, 128))):
        ha, _ = np.histogram(a[..., channel], bins=bins, range=span)
        hb, _ = np.histogram(b[..., channel], bins=bins, range=span)
        total += 0.5 * np.abs(ha / ha.sum() - hb / hb.sum()).sum()
    return total / 3


def mean_lightness(image) -> float:
    """The mean CIE L* (0 black … 100 white) of an image: how light or dark a frame is."""
    return float(_lab(image)[..., 0].mean())
