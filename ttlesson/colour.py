"""Colour coherence for a keyframe walk: each in-between's colours follow its two keyframes', by its weight.

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

METHODS = ("lab",)
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
