"""Every notebook run in JupyterLab in a real Chromium, and checked on screen, as a learner would see it.

nbval proves the notebooks execute; these tests look at the page: no error or traceback, every widget rendered,
no raw repr of a widget or of ttlesson's own objects, the checked facts on screen, and what matters per
notebook (progress bars, gallery, chart legends, the video playing, the interactive prompt box working).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import re

import pytest

import ttlesson

from .browser_lab import FAKE_HF_TOKEN, NOTEBOOKS

pytestmark = pytest.mark.browser

ERROR_MIMES = {"application/vnd.jupyter.stderr", "application/vnd.jupyter.error"}
WIDGET_REPR = re.compile(r"\b(?:HBox|VBox|Box|IntProgress|FloatProgress|HTML|Image|Button|Textarea|IntSlider|"
                         r"BoundedIntText|Output)\((?:children|value|layout|description)=")


def ttlesson_type_names() -> list[str]:
    """Every class ttlesson defines: none of them may show as ``Name(...)`` on screen."""
    names = set()
    for module in pkgutil.walk_packages(ttlesson.__path__, "ttlesson."):
        if module.name.endswith("_ttnn_probe"):
            continue
        loaded = importlib.import_module(module.name)
        names |= {name for name, value in inspect.getmembers(loaded, inspect.isclass)
                  if value.__module__.startswith("ttlesson")}
    return sorted(names)


@functools.cache
def object_repr() -> re.Pattern:
    """``Name(`` for any ttlesson class, ``<ttlesson.…`` or ``object at 0x…``: built on first use, since importing
    every ttlesson module costs seconds that a run which skips (no Chromium) should not pay."""
    return re.compile(r"\b(?:" + "|".join(ttlesson_type_names()) + r")\(|<ttlesson\.|object at 0x[0-9a-f]+")


def checked_outputs(name: str) -> list[str]:
    """The outputs nbval compares (cells tagged nbval-check-output): the notebook's facts, as committed."""
    import nbformat  # seconds to import: not paid by a run that skips for want of Chromium

    notebook = nbformat.read(next(path for path in NOTEBOOKS if path.stem == name), as_version=4)
    return ["".join(output.get("text", "")).strip() for cell in notebook.cells
            if "nbval-check-output" in cell.metadata.get("tags", []) for output in cell.get("outputs", [])]


def squash(text: str) -> str:
    return " ".join(text.split())


def test_runs_without_errors_or_raw_reprs(ran):
    cells = ran.cells()
    # A cell whose source is collapsed shows no prompt: its output says it ran (checked cells always print).
    not_run = [number for number, cell in enumerate(cells)
               if not re.fullmatch(r"\[\d+\]:", cell["prompt"]) and not (cell["hidden"] and cell["outputs"])]
    outputs = ran.outputs()
    errors = [output.text for output in outputs if output.mime in ERROR_MIMES]
    assert not errors, f"{ran.name} shows error output: {errors[0][:2000]}"
    assert not not_run, f"{ran.name}: code cells {not_run} did not run"
    page = ran.text()
    assert "Error displaying widget" not in page
    broken = ran.page.locator(".jupyter-widgets-error-widget").count()
    assert not broken and "Click to show javascript error" not in page, (
        f"{ran.name}: {broken} widget(s) failed to render: {[line for line in ran.console if 'rror' in line][:3]}")
    assert "Traceback (most recent call last)" not in page
    shown = "\n".join(output.text for output in outputs)
    assert not WIDGET_REPR.search(shown), f"raw widget repr on screen: {WIDGET_REPR.search(shown).group()}"
    found = object_repr().search(shown)
    assert not found, f"a Python object repr on screen: …{shown[max(0, found.start() - 80):found.end() + 80]}…"


# What each notebook's first screen shows besides its title and its settings line: a picture or video of what the
# learner makes, or the notebook's one action (text that only that action's output holds).
FIRST_SCREEN = {"01": "picture", "02": "Hugging Face token", "03": "Tenstorrent", "04": "picture", "05": "picture",
                "06": "picture", "07": "Generate", "08": "Measur", "09": " ok", "10": "picture"}


def test_the_first_screen_shows_a_picture_or_the_action_not_settings(ran):
    seen = ran.first_screen()
    wanted = FIRST_SCREEN[ran.name[:2]]
    if wanted == "picture":
        assert seen["pictures"], f"{ran.name}: no picture or video on the first screen; it shows {seen['text'][:500]!r}"
    else:
        assert wanted in seen["text"], f"{ran.name}: the first screen does not show {wanted!r}: {seen['text'][:500]!r}"
    settings = [table for table in seen["tables"] if table.split("\n")[0].split() == ["variable", "value", "from",
                                                                                    "what", "it", "sets"]]
    assert not settings, f"{ran.name}: a table of settings on the first screen: {settings[0][:300]}"


def test_checked_facts_are_on_screen(ran):
    page = squash(ran.text())
    for fact in checked_outputs(ran.name):
        assert squash(fact) in page, f"{ran.name}: the checked output {fact!r} is not on screen"


def test_no_hugging_face_token_on_screen(ran):
    page = ran.page.content()
    assert FAKE_HF_TOKEN not in page and FAKE_HF_TOKEN[3:] not in page


# Run in the page: each inline chart's plotted series and legend entries (ttlesson.notebook.display.Chart gives them
# ids), with the colours the browser actually paints them in.
_CHARTS = """() => [...document.querySelectorAll('.ttlesson-chart svg')].map(svg => {
    const paint = g => [...g.querySelectorAll('path, use, rect')].flatMap(e => {
        const style = getComputedStyle(e);
        return [style.fill, style.stroke].filter(c => c && c !== 'none' && !c.endsWith(', 0)'));
    });
    const group = prefix => [...svg.querySelectorAll(`g[id^="${prefix}:"]`)].map(g => ({
        label: g.id.slice(prefix.length + 1), colours: paint(g)}));
    const box = svg.getBoundingClientRect();
    return {series: group('series'), legend: group('legend'), width: box.width, height: box.height};
})"""


def charts_on_screen(run) -> list[dict]:
    charts = []
    for chart in run.page.evaluate(_CHARTS):
        series: dict[str, set] = {}
        for item in chart["series"]:
            label = re.sub(r":\d+$", "", item["label"])
            series.setdefault(label, set()).update(item["colours"])
        legend = {item["label"]: set(item["colours"]) for item in chart["legend"]}
        charts.append({"series": series, "legend": legend, "size": (chart["width"], chart["height"])})
    return charts


STRING_REPR = re.compile(r"""^(?:(['"]).*\1|\[(['"]).*|True|False|None)$""", re.S)


def test_no_bare_value_or_string_repr(ran):
    """A quoted string, a list of strings or a lone True/False is a value without its sentence."""
    for output in ran.outputs():
        if output.mime == "text/plain":
            assert not STRING_REPR.match(output.text.strip()), f"a Python value where a sentence belongs: " \
                                                               f"{output.text[:200]}"


def test_charts_label_every_series_in_its_own_colour(ran):
    for chart in charts_on_screen(ran):
        assert chart["size"][0] > 100 and chart["size"][1] > 100, f"{ran.name}: a chart that does not render"
        assert chart["legend"], f"{ran.name}: a chart without a legend"
        assert set(chart["series"]) == set(chart["legend"]), (
            f"{ran.name}: legend entries {sorted(chart['legend'])} do not match the plotted series "
            f"{sorted(chart['series'])}")
        for label, colours in chart["legend"].items():
            assert colours and colours & chart["series"][label], (
                f"{ran.name}: the legend shows '{label}' in {colours}, but it is drawn in {chart['series'][label]}")


def visible_bars(run) -> list[dict]:
    return run.page.evaluate("""() => [...document.querySelectorAll('.widget-hprogress')]
        .filter(bar => bar.offsetParent !== null).map(bar => ({
            label: bar.innerText.trim(), width: (bar.querySelector('.progress-bar') || {style: {}}).style.width}))""")


@pytest.mark.parametrize("ran", ["01_set_up_environment"], indirect=True)
def test_01_hardware_table_and_checklist(ran):
    tables = ran.page.locator(".jp-OutputArea-output table")
    texts = [tables.nth(i).inner_text() for i in range(tables.count())]
    assert any("MESH_DEVICE" in text and "auto backend" in text for text in texts), "no hardware table on screen"
    # without a card the Tenstorrent lines fold into one ("Tenstorrent set-up"); with one, TT_METAL_HOME is a line
    assert any(("Tenstorrent set-up" in text or "TT_METAL_HOME" in text) and "Slow generation" in text
               for text in texts), "no checklist with links"


@pytest.mark.parametrize("ran", ["02_hugging_face_auth"], indirect=True)
def test_02_token_status_is_masked(ran):
    from ttlesson.setup.hf import mask

    page = ran.text()
    assert f"Hugging Face token {mask(FAKE_HF_TOKEN)} from the HF_TOKEN environment variable" in page
    assert "login needed" in page  # the access table


@pytest.mark.parametrize("ran", ["04_generate_frames"], indirect=True)
def test_04_bars_full_gallery_complete_legend_right(ran):
    import json

    frames = len(json.loads((ran.lab.workdir / "prompts.json").read_text()))
    bars = visible_bars(ran)
    assert len(bars) == 2, f"expected the frames bar and the steps bar, found {bars}"
    assert all(bar["width"] == "100%" for bar in bars), f"progress bars did not reach full: {bars}"
    images = ran.page.evaluate("""() => [...document.querySelectorAll('.jp-OutputArea-output img.widget-image')]
        .map(img => img.naturalWidth)""")
    assert len(images) == frames and all(width > 0 for width in images), f"gallery: {images} for {frames} frames"
    assert len(charts_on_screen(ran)) == 1  # its series and legend are checked for every notebook


@pytest.mark.parametrize("ran", ["06_stitch_video"], indirect=True)
def test_06_videos_play_and_at_most_one_autoplays(ran):
    videos = ran.page.locator("video")
    states = ran.page.evaluate("""() => [...document.querySelectorAll('video')].map(v => ({
        autoplay: v.autoplay, paused: v.paused, readyState: v.readyState, duration: v.duration,
        expected: parseFloat(v.dataset.duration), type: v.querySelector('source')?.type,
        h264: v.canPlayType('video/mp4; codecs="avc1.42E01E"'), error: v.error && v.error.code}))""")
    assert len(states) == 8, states  # the film; 4 fps, 1 fps; minterpolate, dissolve; slideshow, walk, walk + colour
    assert sum(state["autoplay"] for state in states) <= 1, f"more than one video autoplays: {states}"
    for number, state in enumerate(states):
        assert state["type"] == "video/mp4" and state["h264"], f"video {number} is not H.264 MP4 to Chromium: {state}"
        assert state["error"] is None, f"video {number} cannot be played (MediaError {state['error']}): {state}"
        assert state["readyState"] >= 2, f"video {number} is not ready to play: {state}"
        assert abs(state["duration"] - state["expected"]) < 0.05, f"video {number}: {state}"
        video = videos.nth(number)
        video.scroll_into_view_if_needed()  # Chromium starts a muted autoplay video only once it is on screen
        if state["autoplay"]:
            started = _waits_for(video, "v => !v.paused", 10_000)
            assert started, f"video {number} should start by itself: {state}"
        else:
            ran.page.wait_for_timeout(500)  # time enough for a wrong autoplay to begin
            assert video.evaluate("v => v.paused"), f"video {number} started by itself: {state}"
            video.focus()  # the player's own keyboard control: Space plays, as its play button does
            ran.page.keyboard.press("Space")
        playing = ran.page.evaluate("() => [...document.querySelectorAll('video')].filter(v => !v.paused).length")
        assert playing <= 1, f"{playing} videos play at once"
        start = video.evaluate("v => v.currentTime")
        moving = _waits_for(video, f"v => !v.paused && v.currentTime > {start}", 10_000)
        paused, now = video.evaluate("v => [v.paused, v.currentTime]")
        assert moving, f"video {number} does not play: {state}, currentTime {start} → {now}"
        video.evaluate("v => v.pause()")


def _waits_for(element, predicate: str, timeout_ms: int) -> bool:
    """Poll ``predicate`` on ``element`` until it holds (True) or ``timeout_ms`` passes (False)."""
    try:
        element.evaluate(f"""(el) => new Promise((resolve, reject) => {{
            const check = {predicate}, deadline = Date.now() + {timeout_ms};
            const poll = () => check(el) ? resolve(true) : Date.now() > deadline ? reject('timeout')
                                                                                  : setTimeout(poll, 50);
            poll(); }})""")
        return True
    except Exception:  # playwright's Error: the promise was rejected (timed out), or the page went away
        return False


_WATCH_STUDIO = """() => { window.__studio = [];
    const add = [...document.querySelectorAll('button')].find(b => b.innerText.includes('Add to storyboard'));
    const status = add.closest('.widget-vbox').querySelector('.widget-html-content');
    window.__watch = setInterval(() => window.__studio.push({add: add.disabled, status: status.innerText}), 10);
}"""


@pytest.mark.parametrize("ran", ["07_interactive_mode"], indirect=True)
def test_07_generate_makes_an_image_and_add_waits(ran):
    import json

    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = ran.page
    first = re.search(r"steps: ([\d.]+) s on \S+, after loading the model in ([\d.]+) s", ran.text())
    assert first, "the first frame's status (made by the notebook, with the model load) is not on screen"
    images = page.locator(".jp-OutputArea-output img.widget-image")
    assert images.count() >= 1, "the prompt box shows no image"
    before = images.first.get_attribute("src")
    prompt = "a lighthouse at dusk, orange sky, watercolor"
    page.locator(".widget-textarea textarea").first.fill(prompt)
    page.locator(".widget-text input").first.fill("11")
    page.locator(".widget-text input").first.press("Enter")
    page.evaluate(_WATCH_STUDIO)
    page.locator("button", has_text="Generate").first.click()
    try:
        page.wait_for_function("src => { const img = document.querySelector('.jp-OutputArea-output img.widget-image');"
                               " return img && img.src !== src && img.naturalWidth > 0; }", arg=before, timeout=120_000)
    except PlaywrightTimeout:
        status = page.evaluate("() => window.__studio.at(-1)?.status")
        pytest.fail(f"Generate made no new image within 120 s; the prompt box says: {status!r}", pytrace=False)
    page.wait_for_function("() => !/^(generating|step |loading)/.test(window.__studio.at(-1).status)",
                           timeout=30_000)
    log = page.evaluate("() => { clearInterval(window.__watch); return window.__studio; }")
    busy = [entry for entry in log if re.match(r"generating|step ", entry["status"])]
    assert busy and all(entry["add"] for entry in busy), "Add to storyboard was clickable while a frame was made"
    status = log[-1]["status"]
    again = re.search(r"seed 11, \d+ steps: ([\d.]+) s on \S+ \(the model was already loaded\)", status)
    assert again, f"the second frame reloaded the model or failed: {status}"
    assert float(again.group(1)) < float(first.group(1)) + float(first.group(2)), status
    board = ran.lab.workdir / "prompts.json"
    frames = len(json.loads(board.read_text()))
    add = page.locator("button", has_text="Add to storyboard").first
    assert add.is_enabled() and add.evaluate("b => b.scrollWidth <= b.clientWidth"), "Add's label is cut off"
    add.click()
    page.wait_for_function("() => document.body.innerText.includes('added as frame')", timeout=30_000)
    saved = json.loads(board.read_text())
    assert len(saved) == frames + 1 and saved[-1] == {"prompt": prompt, "seed": 11}


@pytest.mark.parametrize("ran", ["08_hardware_scaling"], indirect=True)
def test_08_measures_one_and_two_devices(ran):
    """The measurement on screen (nbval's, kept in the shared cache, when nbval ran first): one row per device
    count, each a rate on this machine's CPU, and what one frame was; its verdict compares the counts and says the
    frames were the same bytes for every count."""
    rows = ran.page.evaluate("""() => [...document.querySelectorAll('.jp-OutputArea-output table tr')]
        .map(row => [...row.cells].map(cell => cell.innerText.trim()))""")
    measured = [row for row in rows if row and row[0].isdigit()]
    assert [row[0] for row in measured] == ["1", "2"], rows
    assert all(float(row[1]) > 0 and "cpu" in row[4] for row in measured), measured
    page = squash(ran.text())
    assert "Each frame: tiny model, 128×128, 10 steps." in page and "byte-identical for every device count" in page
    assert re.search(r"2 workers made frames [\d.]+× (?:slower|faster) than 1 here|about as fast", page), page[-2000:]


@pytest.mark.parametrize("ran", ["08_hardware_scaling"], indirect=True)
def test_08_chart_labels_every_series(ran):
    (chart,) = charts_on_screen(ran)
    assert any("tt-metal published" in label for label in chart["legend"])
    assert any(label.startswith("measured here") for label in chart["legend"])
