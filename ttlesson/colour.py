"""Colour coherence: each frame's colours matched to a reference frame's (the first keyframe), as Deforum does.

The match is scikit-image's ``match_histograms`` on the CIE LAB channels (lightness and the two colour axes
separately), so a frame keeps its own shapes and contrasts while its palette follows the reference; the result
is converted back to 8-bit RGB. ``histogram_distance`` measures how far two images' colour distributions are.
"""

from __future__ import annotations

METHODS = ("lab",)


def match_colours(image, reference):
    """``image`` (PIL, RGB) with its LAB histograms matched to ``reference``'s; a new RGB PIL image."""
    import numpy as np
    from PIL import Image
    from skimage.color import lab2rgb, rgb2lab
    from skimage.exposure import match_histograms

    source = rgb2lab(np.asarray(image.convert("RGB"), dtype=np.float64) / 255)
    target = rgb2lab(np.asarray(reference.convert("RGB"), dtype=np.float64) / 255)
    matched = lab2rgb(match_histograms(source, target, channel_axis=-1))
    return Image.fromarray(np.clip(np.rint(matched * 255), 0, 255).astype(np.uint8), "RGB")


def histogram_distance(image, reference, bins: int = 32) -> float:
    """How far two images' colour distributions are: the mean over the L, a, b channels (CIE LAB, the space the
    match works in) of the total variation distance between their histograms; 0 for the same distribution, 1
    for disjoint ones."""
    import numpy as np
    from skimage.color import rgb2lab

    a = rgb2lab(np.asarray(image.convert("RGB"), dtype=np.float64) / 255)
    b = rgb2lab(np.asarray(reference.convert("RGB"), dtype=np.float64) / 255)
    total = 0.0
    for channel, span in enumerate(((0, 100), (-128, 128), (-128, 128))):
        ha, _ = np.histogram(a[..., channel], bins=bins, range=span)
        hb, _ = np.histogram(b[..., channel], bins=bins, range=span)
        total += 0.5 * np.abs(ha / ha.sum() - hb / hb.sum()).sum()
    return total / 3
