"""ttlesson's version, as installed (recorded in every manifest and benchmark)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ttlesson")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
