"""On-silicon self-test: one SD 1.4 frame through tt-metal on a real Tenstorrent chip.

Run it on a machine with a card, tt-metal's checkout (TT_METAL_HOME) and its python_env:
    pytest -m tt_hardware tests/test_tt_hardware.py
Elsewhere it is skipped, with the reason. ``ttlesson check-tt`` runs the same check from the command line (and
compares the frame with the demo's ``input_data_1_512x512_ttnn.png`` when the demo has been run in the checkout).
"""

import pytest
from PIL import Image

from ttlesson.backends.tt.device import DEVICE_NODES

HAS_CHIP = DEVICE_NODES.is_dir() and any(DEVICE_NODES.iterdir())

pytestmark = [
    pytest.mark.tt_hardware,
    pytest.mark.skipif(not HAS_CHIP, reason=f"no Tenstorrent device: {DEVICE_NODES} lists no chip "
                                            "(a mock cluster cannot run kernels)"),
]


def test_the_demo_frame_on_silicon_with_timings(tmp_path):
    from ttlesson.backends.tt.selftest import run_check

    result = run_check(tmp_path, steps=50)  # compared with the demo's image when $TT_METAL_HOME holds one
    assert result.device.startswith("Tenstorrent ") and "tt:0" in result.device
    assert result.load_seconds > 0 and result.capture_seconds > 0 and result.frame_seconds > 0
    assert result.ok, str(result)
    with Image.open(result.path) as image:
        assert image.size == (512, 512) and image.mode == "RGB"
        assert len(set(image.getdata())) > 1000  # a picture, not a blank or a single colour
    print(result)
