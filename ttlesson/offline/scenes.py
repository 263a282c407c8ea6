"""Procedural World's Fair scenes with captions: what the offline ``tiny`` model learned from, and its judge's truth.

A ``Scene`` is a handful of attributes drawn from a seed — the time of day, the pavilion's main structure, a
colour palette, perhaps a second structure in the background and a crowd — and from those attributes come the
pixels (``Scene.draw``, numpy and PIL) and a caption in the words the World's Fair storyboard uses
(``Scene.caption``: "Tenstorrent pavilion at night, illuminated dome, Unisphere in background, Kodachrome photo").

Everything is deterministic from the seed (Python's ``random.Random``, whose streams do not change between
versions), so a training set or a test set is named by its seeds alone.
"""

from __future__ import annotations

import functools
import math
import random
import re
from dataclasses import dataclass

TIMES = ("day", "sunset", "night", "fireworks")
STRUCTURES = ("dome", "tower", "globe", "monorail", "rocket", "fountain")
PALETTES = ("kodachrome", "orange and white", "orange and teal", "pastel", "silver and blue")
ATTRIBUTES = {"time": TIMES, "structure": STRUCTURES, "palette": PALETTES}

# How prompts say each attribute: the storyboard's own phrases first, then synonyms.
TIME_PHRASES = {
    "day": ("daytime", "on a sunny day", "blue sky", "bright afternoon sun", "clear summer day", "in daylight",
            "midday sun", "sunny morning"),
    "sunset": ("orange sunset lighting", "at sunset", "sunset", "golden hour", "at dusk", "evening sunset glow",
               "sunset sky", "warm evening light"),
    "night": ("at night", "vintage night photography", "night", "illuminated at night", "night lights",
              "neon signs at night", "under the stars", "lights in the dark"),
    "fireworks": ("fireworks", "fireworks display", "fireworks at night", "fireworks over the fair",
                  "closing ceremony fireworks", "fireworks in the night sky"),
}
STRUCTURE_PHRASES = {
    "dome": ("futuristic dome architecture", "dome", "geodesic dome", "domed pavilion", "space age dome",
             "futuristic dome"),
    "tower": ("observation tower", "tower", "observation towers", "space age tower",
              "tall tower with an observation deck"),
    "globe": ("Unisphere", "World's Fair Unisphere", "globe", "giant steel globe", "Unisphere globe"),
    "monorail": ("monorail", "monorail train", "elevated monorail", "futuristic monorail ride"),
    "rocket": ("rocket", "space rocket", "rocket on a launch pad", "Space Park rocket", "rockets"),
    "fountain": ("fountain", "fountains", "dancing fountains", "water fountain", "fountain pool"),
}
# At night and with fireworks the structures are lit, and the storyboard says so.
LIT_STRUCTURE_PHRASES = {"dome": ("illuminated dome",), "tower": ("illuminated tower",),
                         "globe": ("illuminated Unisphere",), "fountain": ("illuminated fountains",)}
BACKGROUND_NAMES = {"dome": "dome", "tower": "tower", "globe": "Unisphere", "monorail": "monorail",
                    "rocket": "rocket", "fountain": "fountain"}
PALETTE_PHRASES = {
    "kodachrome": ("Kodachrome photo", "Kodachrome colors", "vintage Kodachrome film", "warm Kodachrome tones",
                   "colorful Kodachrome"),
    "orange and white": ("orange and white corporate colors", "orange and white", "white and orange colors",
                         "orange and white pavilion"),
    "orange and teal": ("orange and teal color scheme", "orange and teal", "teal and orange colors",
                        "orange and teal pavilion"),
    "pastel": ("pastel colors", "soft pastel palette", "pastel pink and mint", "pastel color scheme"),
    "silver and blue": ("silver and blue", "chrome and blue space age colors", "silver and blue color scheme",
                        "blue and silver"),
}
CROWD_PHRASES = ("crowds in 1960s attire", "crowds", "amazed visitors", "families", "visitors",
                 "children and families", "people walking")
# The rest of the storyboard's vocabulary: words a prompt may hold that say nothing the scene shows.
FILLER_PHRASES = (
    "Tenstorrent pavilion at 1964 World's Fair", "Tenstorrent pavilion", "1964 World's Fair", "World's Fair",
    "vintage", "retro-futurism", "retro-futuristic artwork", "documentary photography", "mid-century modern",
    "optimistic corporate advertising aesthetic", "nostalgic vintage photograph",
    "1960s corporate technology photography",
    "Tenstorrent AI demonstration", "World's Fair closing ceremony", "thank you for visiting Tenstorrent",
    "1964 corporate signage", "optimistic mid-century illustration style", "educational exhibit",
    "futuristic prediction display", "1960s interpretation of future technology", "AI accelerator prototype",
    "neural network computer", "Tenstorrent computing center", "press conference", "vintage photograph",
    "geometric mid-century modern graphics", "wide angle", "postcard",
)

# The words that name each value when a prompt is read back (``named_attributes``); earlier values win, so
# "fireworks at night" is fireworks.
TIME_WORDS = {
    "fireworks": ("fireworks", "firework"),
    "night": ("night", "in the dark", "under the stars", "neon"),
    "sunset": ("sunset", "dusk", "golden hour", "evening", "twilight"),
    "day": ("day", "daytime", "daylight", "sunny", "blue sky", "afternoon", "midday", "morning"),
}
STRUCTURE_WORDS = {"dome": ("dome", "domed"), "tower": ("tower", "towers"), "globe": ("globe", "unisphere"),
                   "monorail": ("monorail",), "rocket": ("rocket", "rockets"), "fountain": ("fountain", "fountains")}
PALETTE_WORDS = {"kodachrome": ("kodachrome",), "orange and white": ("orange and white", "white and orange"),
                 "orange and teal": ("orange and teal", "teal and orange"), "pastel": ("pastel",),
                 "silver and blue": ("silver and blue", "blue and silver", "chrome and blue")}
_BACKGROUND_MARKS = ("in background", "in the background", "behind")

# primary, secondary, accent, ground; colours are jittered a little per scene.
_PALETTE_COLORS = {
    "kodachrome": ((205, 40, 35), (245, 195, 45), (30, 70, 160), (215, 190, 150)),
    "orange and white": ((240, 120, 25), (245, 243, 235), (120, 120, 125), (200, 198, 192)),
    "orange and teal": ((238, 112, 32), (22, 142, 140), (12, 80, 85), (214, 196, 160)),
    "pastel": ((242, 168, 190), (165, 225, 200), (190, 170, 232), (238, 228, 208)),
    "silver and blue": ((192, 198, 210), (40, 90, 205), (90, 100, 120), (165, 170, 180)),
}
_LIGHT = {"day": (1.0, 1.0, 1.0), "sunset": (1.0, 0.72, 0.52), "night": (0.26, 0.27, 0.42),
          "fireworks": (0.3, 0.28, 0.42)}
_SKY = {  # top, middle, horizon
    "day": ((40, 95, 190), (95, 155, 225), (190, 220, 240)),
    "sunset": ((55, 40, 110), (215, 95, 70), (255, 180, 70)),
    "night": ((4, 6, 22), (12, 18, 48), (30, 36, 70)),
    "fireworks": ((6, 4, 24), (16, 14, 50), (34, 30, 72)),
}
_FIREWORK_COLORS = ((255, 215, 80), (255, 70, 70), (90, 255, 130), (255, 90, 230), (255, 255, 255), (90, 180, 255))
_WINDOW_LIGHT = (255, 226, 140)
_SUPERSAMPLE = 2


@dataclass(frozen=True)
class Scene:
    """One World's Fair scene: its attributes, and the seed its details (positions, sizes, jitter) come from."""

    time: str
    structure: str
    palette: str
    background: str | None  # a second, smaller structure behind the main one
    crowd: bool
    seed: int

    @classmethod
    def random(cls, seed: int, **fixed) -> Scene:
        """The scene for ``seed``; keyword arguments fix attributes (``time="night"``) and draw the rest."""
        rng = random.Random(f"scene-{seed}")
        time = fixed.get("time") or rng.choice(TIMES)
        structure = fixed.get("structure") or rng.choice(STRUCTURES)
        palette = fixed.get("palette") or rng.choice(PALETTES)
        others = [s for s in STRUCTURES if s != structure]
        background = fixed["background"] if "background" in fixed else (
            rng.choice(others) if rng.random() < 0.25 else None)
        crowd = fixed["crowd"] if "crowd" in fixed else rng.random() < 0.6
        return cls(time, structure, palette, background, crowd, seed)

    @property
    def labels(self) -> dict[str, int]:
        """The attributes as class numbers, in the order of ``TIMES``, ``STRUCTURES`` and ``PALETTES``."""
        return {name: values.index(getattr(self, name)) for name, values in ATTRIBUTES.items()}

    def caption(self, variant: int = 0) -> str:
        """A prompt for this scene in the storyboard's words; each ``variant`` words and orders it differently.

        Most captions name all three attributes, some leave one out (the model then learns what a prompt that
        does not say looks like), and a few storyboard phrases that name nothing visible are mixed in.
        """
        rng = random.Random(f"caption-{self.seed}-{variant}")
        lit = self.time in ("night", "fireworks")
        structure_words = STRUCTURE_PHRASES[self.structure] + (LIT_STRUCTURE_PHRASES.get(self.structure, ())
                                                               if lit else ())
        phrases = []
        if rng.random() < 0.92:
            phrases.append(rng.choice(structure_words))
        if rng.random() < 0.88:
            phrases.append(rng.choice(TIME_PHRASES[self.time]))
        if rng.random() < 0.8:
            phrases.append(rng.choice(PALETTE_PHRASES[self.palette]))
        if self.background and rng.random() < 0.8:
            name = BACKGROUND_NAMES[self.background]
            phrases.append(rng.choice((f"{name} in background", f"{name} in the background", f"{name} behind")))
        if self.crowd and rng.random() < 0.7:
            phrases.append(rng.choice(CROWD_PHRASES))
        phrases += rng.sample(FILLER_PHRASES, rng.choice((0, 1, 1, 2, 2, 3)))
        rng.shuffle(phrases)
        return ", ".join(phrases)

    def draw(self, size: int = 128):
        """The scene as a ``size``×``size`` RGB PIL image (drawn at twice the size, then downsampled)."""
        from PIL import Image, ImageDraw

        rng = random.Random(f"draw-{self.seed}")
        side = size * _SUPERSAMPLE
        colors = _jittered_palette(self.palette, rng)
        horizon = rng.uniform(0.62, 0.74)
        image = Image.fromarray(_sky(self.time, side, horizon, rng))
        pen = _Pen(ImageDraw.Draw(image), side, self.time)
        _sky_details(pen, self.time, horizon, rng)
        _skyline(pen, horizon, colors, rng)
        _ground(pen, horizon, colors, rng)
        if self.background:
            x = rng.choice((rng.uniform(0.12, 0.22), rng.uniform(0.78, 0.88)))
            _STRUCTURE_DRAWERS[self.background](pen, x, horizon, 0.45, colors, rng, haze=0.35)
        center = rng.uniform(0.38, 0.62)
        _STRUCTURE_DRAWERS[self.structure](pen, center, horizon, rng.uniform(0.85, 1.15), colors, rng, haze=0.0)
        if self.crowd:
            _crowd(pen, horizon, colors, rng)
        image = image.resize((size, size), Image.Resampling.LANCZOS)
        return _grade(image, self.palette, self.time)


def named_attributes(prompt: str) -> dict[str, str]:
    """The attributes a prompt names, read back with the caption vocabulary: ``{"time": "night", ...}``.

    A structure in a phrase that puts it in the background ("Unisphere in background") is the ``background``,
    not the main ``structure``; an attribute named with two different values (two palettes) is left out.
    """
    phrases = [phrase.strip() for phrase in prompt.lower().split(",")]
    named: dict[str, str] = {}
    times = [value for value, words in TIME_WORDS.items() if any(_has(p, words) for p in phrases)]
    if times:
        named["time"] = times[0]
    main: set[str] = set()
    behind: set[str] = set()
    for phrase in phrases:
        found = {value for value, words in STRUCTURE_WORDS.items() if _has(phrase, words)}
        (behind if any(mark in phrase for mark in _BACKGROUND_MARKS) else main).update(found)
    if len(main) == 1:
        named["structure"] = main.pop()
    if len(behind) == 1:
        named["background"] = behind.pop()
    palettes = {value for value, words in PALETTE_WORDS.items() if any(_has(p, words) for p in phrases)}
    if len(palettes) == 1:
        named["palette"] = palettes.pop()
    return named


def _has(phrase: str, words: tuple[str, ...]) -> bool:
    return _word_pattern(words).search(phrase) is not None


@functools.cache
def _word_pattern(words: tuple[str, ...]):
    return re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b")


def scenes(count: int, first_seed: int = 0) -> list[Scene]:
    """``count`` scenes from consecutive seeds: a data set named by its first seed."""
    return [Scene.random(seed) for seed in range(first_seed, first_seed + count)]


# --- drawing -----------------------------------------------------------------------------------------------

class _Pen:
    """ImageDraw in unit coordinates (0..1 across the image), with the time of day's light on every colour."""

    def __init__(self, draw, side: int, time: str):
        self.draw, self.side, self.time = draw, side, time
        self.light = _LIGHT[time]

    @property
    def dark(self) -> bool:
        return self.time in ("night", "fireworks")

    def lit(self, color, haze: float = 0.0):
        sky = _SKY[self.time][2]
        return tuple(int(round((1 - haze) * c * k + haze * s)) for c, k, s in zip(color, self.light, sky))

    def xy(self, points):
        return [(x * self.side, y * self.side) for x, y in points]

    def box(self, x0, y0, x1, y1):
        return [min(x0, x1) * self.side, min(y0, y1) * self.side, max(x0, x1) * self.side, max(y0, y1) * self.side]

    def width(self, w: float) -> int:
        return max(1, int(round(w * self.side)))

    def polygon(self, points, fill):
        self.draw.polygon(self.xy(points), fill=fill)

    def rect(self, x0, y0, x1, y1, fill):
        self.draw.rectangle(self.box(x0, y0, x1, y1), fill=fill)

    def ellipse(self, x0, y0, x1, y1, fill=None, outline=None, width=0.004):
        self.draw.ellipse(self.box(x0, y0, x1, y1), fill=fill, outline=outline, width=self.width(width))

    def line(self, points, fill, width=0.004):
        self.draw.line(self.xy(points), fill=fill, width=self.width(width))

    def dot(self, x, y, r, fill):
        self.draw.ellipse(self.box(x - r, y - r, x + r, y + r), fill=fill)

    def lights_along(self, points, rng, spacing=0.03, color=_WINDOW_LIGHT):
        """At night, small bright lights every ``spacing`` along a polyline: the "illuminated" look."""
        if not self.dark:
            return
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            steps = max(1, int(math.hypot(x1 - x0, y1 - y0) / spacing))
            for i in range(steps):
                t = i / steps
                self.dot(x0 + t * (x1 - x0), y0 + t * (y1 - y0), 0.0045, color)


def _jittered_palette(name: str, rng: random.Random):
    return tuple(tuple(max(0, min(255, c + rng.randint(-12, 12))) for c in color) for color in _PALETTE_COLORS[name])


def _sky(time: str, side: int, horizon: float, rng: random.Random):
    import numpy as np

    top, middle, low = (np.array(c, dtype=np.float32) for c in _SKY[time])
    shift = np.array([rng.uniform(-10, 10) for _ in range(3)], dtype=np.float32)
    t = np.clip(np.linspace(0, 1, side, dtype=np.float32) / horizon, 0, 1)[:, None]
    upper = top + (middle - top) * np.clip(t * 2, 0, 1)
    lower = middle + (low - middle) * np.clip(t * 2 - 1, 0, 1)
    rows = np.where(t < 0.5, upper, lower) + shift
    return np.clip(np.repeat(rows[:, None, :], side, axis=1), 0, 255).astype(np.uint8)


def _sky_details(pen: _Pen, time: str, horizon: float, rng: random.Random):
    if time == "day":
        if rng.random() < 0.5:
            x, y = rng.uniform(0.1, 0.9), rng.uniform(0.08, 0.25)
            pen.dot(x, y, 0.045, (255, 250, 215))
        for _ in range(rng.randint(1, 4)):
            _cloud(pen, rng.uniform(0.05, 0.95), rng.uniform(0.08, horizon - 0.3), (250, 250, 252), rng)
    elif time == "sunset":
        x = rng.uniform(0.15, 0.85)
        pen.dot(x, horizon - 0.02, 0.14, (255, 150, 60))
        pen.dot(x, horizon - 0.02, 0.09, (255, 205, 110))
        for _ in range(rng.randint(2, 4)):
            y = rng.uniform(0.1, horizon - 0.2)
            x0 = rng.uniform(-0.1, 0.7)
            pen.ellipse(x0, y, x0 + rng.uniform(0.25, 0.5), y + rng.uniform(0.015, 0.035), fill=(240, 120, 110))
    else:
        for _ in range(rng.randint(30, 60)):
            pen.dot(rng.random(), rng.uniform(0, horizon - 0.05), 0.003, (235, 235, 255))
        if rng.random() < 0.6:  # searchlights
            for _ in range(2):
                x = rng.uniform(0.1, 0.9)
                top = (x + rng.uniform(-0.3, 0.3), 0.0)
                pen.polygon([(x - 0.005, horizon), top, (top[0] + 0.05, 0.0), (x + 0.005, horizon)], (60, 70, 110))
        if time == "fireworks":
            for _ in range(rng.randint(2, 4)):
                _firework(pen, rng.uniform(0.1, 0.9), rng.uniform(0.08, 0.35), rng.uniform(0.07, 0.13), rng)


def _cloud(pen: _Pen, x: float, y: float, color, rng: random.Random):
    for _ in range(rng.randint(3, 5)):
        dx, dy, r = rng.uniform(-0.07, 0.07), rng.uniform(-0.015, 0.015), rng.uniform(0.025, 0.045)
        pen.ellipse(x + dx - r * 1.6, y + dy - r, x + dx + r * 1.6, y + dy + r, fill=color)


def _firework(pen: _Pen, x: float, y: float, radius: float, rng: random.Random):
    color = rng.choice(_FIREWORK_COLORS)
    rays = rng.randint(14, 22)
    for i in range(rays):
        angle = 2 * math.pi * i / rays + rng.uniform(-0.1, 0.1)
        r = radius * rng.uniform(0.75, 1.0)
        end = (x + r * math.cos(angle), y + r * math.sin(angle))
        pen.line([(x + 0.2 * r * math.cos(angle), y + 0.2 * r * math.sin(angle)), end], color, 0.004)
        pen.dot(*end, 0.006, (255, 255, 230))


def _skyline(pen: _Pen, horizon: float, colors, rng: random.Random):
    """Low pavilions and flags along the horizon: the rest of the fair, far away."""
    x = -0.05
    while x < 1.05:
        w, h = rng.uniform(0.05, 0.14), rng.uniform(0.02, 0.07)
        pen.rect(x, horizon - h, x + w, horizon, pen.lit(rng.choice(colors[1:3]), haze=0.55))
        if pen.dark and rng.random() < 0.7:
            for i in range(int(w / 0.025)):
                pen.dot(x + 0.012 + i * 0.025, horizon - h * 0.5, 0.003, _WINDOW_LIGHT)
        x += w + rng.uniform(0.0, 0.06)
    for _ in range(rng.randint(2, 5)):
        fx = rng.uniform(0.02, 0.98)
        pen.line([(fx, horizon), (fx, horizon - 0.09)], pen.lit((90, 90, 95), haze=0.3), 0.003)
        pen.rect(fx, horizon - 0.09, fx + 0.025, horizon - 0.075, pen.lit(rng.choice(colors[:2]), haze=0.2))


def _ground(pen: _Pen, horizon: float, colors, rng: random.Random):
    lawn = rng.random() < 0.4
    base = (96, 150, 72) if lawn else colors[3]
    pen.rect(0, horizon, 1, 1, pen.lit(base))
    vanish = rng.uniform(0.3, 0.7)
    seam = pen.lit(tuple(int(c * 0.8) for c in (colors[3] if lawn else base)))
    if lawn:  # a paved path to the pavilion
        pen.polygon([(vanish - 0.02, horizon), (vanish + 0.02, horizon), (vanish + 0.25, 1.0), (vanish - 0.25, 1.0)],
                    pen.lit(colors[3]))
    else:  # paving lines running to the horizon
        for i in range(-4, 5):
            pen.line([(vanish + i * 0.03, horizon), (vanish + i * 0.35, 1.0)], seam, 0.003)
    if pen.dark:  # lamp posts
        for _ in range(rng.randint(2, 4)):
            lx = rng.uniform(0.05, 0.95)
            pen.line([(lx, horizon + 0.12), (lx, horizon + 0.02)], (40, 40, 50), 0.004)
            pen.dot(lx, horizon + 0.02, 0.01, _WINDOW_LIGHT)


def _crowd(pen: _Pen, horizon: float, colors, rng: random.Random):
    clothes = (colors[0], colors[1], colors[2], (40, 40, 50), (60, 60, 90), (120, 40, 40), (230, 230, 225))
    people = sorted((rng.uniform(horizon + 0.06, 0.98), rng.random()) for _ in range(rng.randint(15, 45)))
    for y, x in people:  # far people first, so near ones stand in front
        scale = 0.5 + (y - horizon) / (1 - horizon)
        w, h, r = 0.012 * scale, 0.035 * scale, 0.007 * scale
        pen.rect(x - w / 2, y - h, x + w / 2, y, pen.lit(rng.choice(clothes)))
        pen.dot(x, y - h - r * 0.8, r, pen.lit((225, 185, 150)))


def _dome(pen: _Pen, cx, base, scale, colors, rng, haze):
    primary, secondary, accent, _ = (pen.lit(c, haze) for c in colors)
    w, h, drum = 0.48 * scale, 0.26 * scale, 0.055 * scale
    top = base - drum
    pen.rect(cx - w / 2, top, cx + w / 2, base, secondary)
    pen.draw.chord(pen.box(cx - w / 2, top - h, cx + w / 2, top + h), 180, 360, fill=primary)
    for k in (0.33, 0.7):  # geodesic ribs
        pen.draw.arc(pen.box(cx - w / 2 * k, top - h, cx + w / 2 * k, top + h), 180, 360, fill=accent,
                     width=pen.width(0.004))
    pen.draw.arc(pen.box(cx - w / 2, top - h * 0.55, cx + w / 2, top + h * 0.55), 180, 360, fill=accent,
                 width=pen.width(0.004))
    pen.line([(cx, top - h), (cx, top - h - 0.05 * scale)], accent, 0.005)
    for i in range(int(w / 0.04)):
        x = cx - w / 2 + 0.02 + i * 0.04
        pen.rect(x, top + drum * 0.3, x + 0.018, top + drum * 0.75,
                 _WINDOW_LIGHT if pen.dark else pen.lit((60, 70, 90), haze))
    arc = [(cx + w / 2 * math.cos(a), top - h * math.sin(a)) for a in (i * math.pi / 12 for i in range(13))]
    pen.lights_along(arc, rng)


def _tower(pen: _Pen, cx, base, scale, colors, rng, haze):
    primary, secondary, accent, _ = (pen.lit(c, haze) for c in colors)
    height, leg = 0.5 * scale, 0.03 * scale
    top = base - height
    for side in (-1, 1):
        pen.polygon([(cx + side * 0.06 * scale, base), (cx + side * (0.06 * scale - leg), base),
                     (cx + side * 0.008, top), (cx + side * 0.02, top)], secondary)
    for frac, width in ((1.0, 0.17), (0.62, 0.1)):
        y = base - height * frac
        pen.ellipse(cx - width * scale / 2, y - 0.025 * scale, cx + width * scale / 2, y + 0.025 * scale, fill=primary)
        pen.rect(cx - width * scale / 2, y - 0.004, cx + width * scale / 2, y + 0.004, accent)
        pen.lights_along([(cx - width * scale / 2, y), (cx + width * scale / 2, y)], rng, spacing=0.02)
    pen.line([(cx, top - 0.025 * scale), (cx, top - 0.1 * scale)], accent, 0.004)
    if pen.dark:
        pen.dot(cx, top - 0.1 * scale, 0.008, (255, 80, 60))


def _globe(pen: _Pen, cx, base, scale, colors, rng, haze):
    primary, secondary, accent, _ = (pen.lit(c, haze) for c in colors)
    r = 0.2 * scale
    cy = base - 0.07 * scale - r
    pen.polygon([(cx - 0.05 * scale, base), (cx + 0.05 * scale, base), (cx + 0.012, cy + r * 0.9),
                 (cx - 0.012, cy + r * 0.9)], accent)
    pen.ellipse(cx - r, cy - r, cx + r, cy + r, fill=secondary, outline=primary, width=0.006)
    for _ in range(3):  # continents
        a, d = rng.uniform(0, 2 * math.pi), rng.uniform(0, 0.55) * r
        x, y, s = cx + d * math.cos(a), cy + d * math.sin(a), rng.uniform(0.25, 0.4) * r
        pen.ellipse(x - s, y - s * 0.7, x + s, y + s * 0.7, fill=primary)
    for k in (0.35, 0.75):
        pen.ellipse(cx - r * k, cy - r, cx + r * k, cy + r, outline=accent, width=0.003)
    for k in (-0.5, 0.0, 0.5):
        half = r * math.sqrt(1 - k * k)
        pen.line([(cx - half, cy + k * r), (cx + half, cy + k * r)], accent, 0.003)
    tilt = rng.uniform(-0.25, 0.25)
    ring = [(cx + 1.35 * r * math.cos(a), cy + 0.35 * r * math.sin(a) + tilt * r * math.cos(a))
            for a in (i * math.pi / 16 for i in range(33))]
    pen.line(ring, primary, 0.004)
    pen.lights_along([(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (i * math.pi / 10 for i in range(21))], rng)


def _monorail(pen: _Pen, cx, base, scale, colors, rng, haze):
    primary, secondary, accent, _ = (pen.lit(c, haze) for c in colors)
    beam = base - 0.24 * scale
    offset = rng.uniform(0, 0.25)
    for i in range(5):
        x = offset + i * 0.25
        pen.rect(x - 0.014 * scale, beam, x + 0.014 * scale, base, accent)
        pen.rect(x - 0.04 * scale, beam, x + 0.04 * scale, beam + 0.02 * scale, accent)
    pen.rect(-0.01, beam - 0.022 * scale, 1.01, beam, secondary)
    length, height = 0.46 * scale, 0.085 * scale
    x0, y0 = cx - length / 2, beam - 0.022 * scale - height
    pen.draw.rounded_rectangle(pen.box(x0, y0, x0 + length, y0 + height), radius=pen.width(height / 2), fill=primary)
    pen.rect(x0 + 0.03, y0 + height * 0.62, x0 + length - 0.03, y0 + height * 0.78, secondary)
    for i in range(int((length - 0.06) / 0.045)):
        x = x0 + 0.04 + i * 0.045
        pen.rect(x, y0 + height * 0.2, x + 0.03, y0 + height * 0.5,
                 _WINDOW_LIGHT if pen.dark else pen.lit((70, 90, 120)))
    pen.lights_along([(-0.01, beam), (1.01, beam)], rng, spacing=0.05)


def _rocket(pen: _Pen, cx, base, scale, colors, rng, haze):
    primary, secondary, accent, _ = (pen.lit(c, haze) for c in colors)
    body_w, body_h, nose = 0.075 * scale, 0.4 * scale, 0.11 * scale
    pad = 0.025 * scale
    pen.rect(cx - 0.1 * scale, base - pad, cx + 0.1 * scale, base, accent)
    bottom, top = base - pad, base - pad - body_h
    pen.rect(cx + 0.07 * scale, top + 0.04, cx + 0.085 * scale, bottom, accent)  # gantry
    for i in range(6):
        y = bottom - i * body_h / 6
        pen.line([(cx + 0.07 * scale, y), (cx + 0.04 * scale, y - 0.02)], accent, 0.003)
    pen.rect(cx - body_w / 2, top, cx + body_w / 2, bottom, secondary)
    pen.polygon([(cx - body_w / 2, top), (cx + body_w / 2, top), (cx, top - nose)], primary)
    for frac in (0.3, 0.62):
        y = top + body_h * frac
        pen.rect(cx - body_w / 2, y, cx + body_w / 2, y + 0.03 * scale, primary)
    for side in (-1, 1):
        pen.polygon([(cx + side * body_w / 2, bottom - 0.09 * scale), (cx + side * (body_w / 2 + 0.05 * scale), bottom),
                     (cx + side * body_w / 2, bottom)], primary)
    pen.lights_along([(cx + 0.078 * scale, bottom), (cx + 0.078 * scale, top + 0.04)], rng, spacing=0.04)


def _fountain(pen: _Pen, cx, base, scale, colors, rng, haze):
    primary, secondary, accent, _ = (pen.lit(c, haze) for c in colors)
    water = primary if pen.dark else pen.lit((215, 235, 250), haze)  # coloured lights on the water at night
    w, pool_y = 0.34 * scale, base + 0.05
    pen.ellipse(cx - w, pool_y - 0.045 * scale, cx + w, pool_y + 0.045 * scale, fill=secondary)
    pen.ellipse(cx - w * 0.9, pool_y - 0.035 * scale, cx + w * 0.9, pool_y + 0.035 * scale,
                fill=pen.lit((70, 130, 190), haze))
    top = pool_y - 0.38 * scale
    pen.polygon([(cx - 0.012 * scale, pool_y), (cx + 0.012 * scale, pool_y), (cx + 0.004, top), (cx - 0.004, top)],
                water)
    for i in range(rng.randint(2, 4)):
        spread = w * (0.35 + 0.2 * i)
        rise = 0.25 * scale * (1 - 0.18 * i)
        for side in (-1, 1):
            arc = [(cx + side * spread * t, pool_y - 4 * rise * t * (1 - t)) for t in (j / 12 for j in range(13))]
            pen.line(arc, water, 0.006)
    for _ in range(25):
        a = rng.uniform(0, math.pi)
        pen.dot(cx + math.cos(a) * 0.06 * scale, top + rng.uniform(0, 0.06) * scale, 0.003, water)


_STRUCTURE_DRAWERS = {"dome": _dome, "tower": _tower, "globe": _globe, "monorail": _monorail, "rocket": _rocket,
                      "fountain": _fountain}


def _grade(image, palette: str, time: str):
    """The film look: Kodachrome warm and saturated, pastel light and soft; the others as drawn."""
    import numpy as np
    from PIL import Image

    if palette not in ("kodachrome", "pastel"):
        return image
    pixels = np.asarray(image, dtype=np.float32)
    gray = pixels.mean(axis=2, keepdims=True)
    if palette == "kodachrome":
        pixels = gray + (pixels - gray) * 1.35
        pixels = (pixels - 128) * 1.1 + 128 + np.array([12, 2, -14], dtype=np.float32)
    else:
        pixels = gray + (pixels - gray) * 0.75
        lift = 0.1 if time in ("night", "fireworks") else 0.28  # soft, without turning the night to fog
        pixels = pixels * (1 - lift) + 255 * lift
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
