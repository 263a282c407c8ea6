"""Run as ``python -m ttlesson.machine.ttnn_probe``: import ttnn, ask what it sees (chips, system mesh), print one
JSON line.

``ttlesson.machine`` runs this in a child process: importing ttnn takes seconds (it imports torch), ttnn reads
``TT_METAL_*`` variables once, at import, and the child can be stopped when it takes too long. Only the chip
count, cluster type, architecture and system mesh shape are asked for; no ttnn device is opened.
"""

from __future__ import annotations

import json
import time

MARKER = "TTLESSON-TTNN-PROBE "


def probe() -> dict:
    started = time.perf_counter()
    try:
        import ttnn
    except Exception as err:  # a broken build fails in many ways (ImportError, OSError, RuntimeError); report any
        return {"imports": False, "error": f"{type(err).__name__}: {err}"}
    answer: dict[str, object] = {"imports": True, "import_seconds": round(time.perf_counter() - started, 2)}
    try:
        answer["devices"] = int(ttnn.get_num_devices())
        answer["pcie_devices"] = int(ttnn.get_num_pcie_devices())
    except RuntimeError as err:  # TT_FATAL "No chips detected in the cluster", or a mock descriptor it refuses
        answer["error"] = str(err)
        return answer
    answer["cluster_type"] = _cluster_type(ttnn)
    answer["arch"] = _arch(ttnn)
    answer["system_mesh"] = _system_mesh(ttnn)
    return answer


def _cluster_type(ttnn) -> str | None:
    cluster = getattr(ttnn, "cluster", None)
    if cluster is None or not hasattr(cluster, "get_cluster_type"):
        return None  # older releases have no ttnn.cluster
    return str(cluster.get_cluster_type()).rsplit(".", 1)[-1]


def _system_mesh(ttnn) -> list[int] | None:
    """``SystemMeshDescriptor().shape()``: the mesh ttnn opens when no shape is given (e.g. [2, 4] on a T3K)."""
    describe = getattr(getattr(getattr(ttnn, "_ttnn", None), "multi_device", None), "SystemMeshDescriptor", None)
    if describe is None:
        return None
    try:
        return [int(part) for part in describe().shape()]
    except RuntimeError:  # e.g. a Galaxy without tt-metal's physical grouping descriptor next to the wheel
        return None


def _arch(ttnn) -> str | None:
    get_arch_name = getattr(ttnn, "get_arch_name", None)
    return str(get_arch_name()) if get_arch_name else None


if __name__ == "__main__":
    print(MARKER + json.dumps(probe()), flush=True)
