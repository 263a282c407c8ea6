"""Open only what is asked, and never advise a reset of a card someone is using.

The host here has no Tenstorrent card: the kernel driver's lists (/sys/class/tenstorrent, /dev/tenstorrent,
/proc/driver/tenstorrent/N/pids) are written as a fake host tree (``HostPaths.under``), and the device layer is
given that tree's answers: STAND-INS for a T3K's driver, not a device."""

from __future__ import annotations

import os

import pytest

from ttlesson.backends.tt import device
from ttlesson.errors import TTDeviceError
from ttlesson.machine.driver import Holder, device_holders, pcie_devices
from ttlesson.machine.host import HostPaths


def fake_t3k(root, holders: dict[int, int] | None = None) -> HostPaths:
    """Four n300 cards (one PCIe chip each, two chips reached), and which process holds which card."""
    host = HostPaths.under(root)
    for number in range(4):
        entry = host.tenstorrent_class / f"tenstorrent!{number}"
        entry.mkdir(parents=True)
        (entry / "tt_card_type").write_text("n300\n")
        host.device_nodes.mkdir(parents=True, exist_ok=True)
        (host.device_nodes / str(number)).write_text("")
    for card, pid in (holders or {}).items():
        folder = host.driver_proc / str(card)
        folder.mkdir(parents=True)
        (folder / "pids").write_text(f"{pid}\n")
        (host.proc / str(pid)).mkdir(parents=True, exist_ok=True)
        (host.proc / str(pid) / "cmdline").write_bytes(b"python\0-m\0ipykernel_launcher\0")
        (host.proc / str(pid) / "status").write_text("Name:\tpython\nUid:\t0\t0\t0\t0\n")
    return host


@pytest.fixture
def t3k(tmp_path, monkeypatch):
    monkeypatch.setenv("TT_VISIBLE_DEVICES", "")  # recorded, so what claim_cards sets is undone after the test
    monkeypatch.delenv("TT_VISIBLE_DEVICES")

    def use(holders=None):
        host = fake_t3k(tmp_path, holders)
        monkeypatch.setattr(device, "_cards_here", lambda: pcie_devices(host))
        monkeypatch.setattr(device, "other_holders", lambda: device_holders(host, ignore_pid=os.getpid()))
        return host
    return use


def test_the_driver_lists_each_pcie_device_and_the_chips_behind_it(t3k):
    assert pcie_devices(t3k()) == {0: 2, 1: 2, 2: 2, 3: 2}


def test_one_device_opens_one_free_card_not_the_system(t3k):
    t3k({0: 4242})
    assert device.claim_cards(1) == [1]  # card 0 is someone else's: the first free one
    assert os.environ["TT_VISIBLE_DEVICES"] == "1"


def test_three_devices_take_two_n300_cards(t3k):
    t3k()
    assert device.claim_cards(3) == [0, 1] and os.environ["TT_VISIBLE_DEVICES"] == "0,1"


def test_a_card_someone_holds_is_refused_with_the_holder_and_no_reset_advice(t3k):
    t3k({2: 4242})
    with pytest.raises(TTDeviceError) as refused:
        device.claim_cards("all")
    sentence = str(refused.value)
    assert "/dev/tenstorrent/2 is held by pid 4242 (user root, python -m ipykernel_launcher)" in sentence
    assert "tt-smi -r" not in sentence and "never reset" in sentence and "ttlesson serve" in sentence


def test_cards_given_by_ray_or_the_user_are_kept_and_checked(t3k, monkeypatch):
    t3k({3: 4242})
    monkeypatch.setenv("TT_VISIBLE_DEVICES", "1")
    assert device.claim_cards(1) == [1]
    monkeypatch.setenv("TT_VISIBLE_DEVICES", "3")
    with pytest.raises(TTDeviceError, match="pid 4242"):
        device.claim_cards(1)


def test_a_device_error_advises_a_reset_only_when_nobody_holds_the_card(monkeypatch):
    failure = RuntimeError("TT_FATAL @ open\\ninfo:\\nTimeout waiting for ethernet core")
    monkeypatch.setattr(device, "other_holders", lambda: [])
    assert "tt-smi -r" in str(device.open_error(failure))
    monkeypatch.setattr(device, "other_holders", lambda: [Holder(0, 4242, "python render.py", "alice")])
    held = str(device.open_error(failure))
    assert "tt-smi -r" not in held and "pid 4242 (user alice, python render.py)" in held


def test_without_a_kernel_driver_list_nothing_is_claimed(monkeypatch):
    monkeypatch.setenv("TT_VISIBLE_DEVICES", "")
    monkeypatch.delenv("TT_VISIBLE_DEVICES")
    monkeypatch.setattr(device, "_cards_here", lambda: {})
    assert device.claim_cards(1) is None and "TT_VISIBLE_DEVICES" not in os.environ
