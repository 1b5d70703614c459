"""The layer walk: what to do (``spec``), which cells (``plan``), computing them (``runner``,
``cells``, ``search``, ``metrics``, ``trainphase``, ``ensemble``, ``weights``), where they run
(``executors``), the driver that stores each finished layer (``driver``, ``store``), and the
``Result`` with its table (``report``) and figures (``plots``, ``weight_plots``, on use)."""

from walknoise.walk.driver import run_spec, scan
from walknoise.walk.report import midpoint_table
from walknoise.walk.result import Result, load
from walknoise.walk.spec import ScanSpec, parse_sigmas
from walknoise.walk.trainphase import train_under_noise

__all__ = [
    "Result",
    "ScanSpec",
    "load",
    "midpoint_table",
    "parse_sigmas",
    "run_spec",
    "scan",
    "train_under_noise",
]
