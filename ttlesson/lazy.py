"""Names a package exports without importing their modules until first use (PEP 562)."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module


def exports(package: str, where: dict[str, tuple[str, str]], namespace: dict
            ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``where`` maps each public name to (module, attribute)."""

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attribute = where[name]
        value = getattr(import_module(f".{module}", package), attribute)
        namespace[name] = value  # the next lookup is an ordinary one
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return __getattr__, __dir__
