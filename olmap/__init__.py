"""olmap: olivine maps and crystal catalogues from SEM mosaics of rock thin sections."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("olmap")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
