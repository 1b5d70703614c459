"""walknoise: walk Gaussian noise through a PyTorch model, one layer at a time.

>>> import walknoise
>>> result = walknoise.scan(model, "mnist", noise="additive", sigmas="log:1e-2:1e3:31")
>>> result.midpoints()
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("walknoise")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

from walknoise.errors import WalknoiseError
from walknoise.inject import inject
from walknoise.noise import Additive, Combined, Multiplicative, make_noise
from walknoise.result import Result, load
from walknoise.trainphase import train
from walknoise.walk import scan

__all__ = [
    "Additive",
    "Combined",
    "Multiplicative",
    "Result",
    "WalknoiseError",
    "__version__",
    "inject",
    "load",
    "make_noise",
    "scan",
    "train",
]
