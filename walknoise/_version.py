"""The installed distribution's version, kept apart so no module imports the package face."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("walknoise")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"
