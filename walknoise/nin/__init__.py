"""Noise injection nodes (Bloch, Freytsis, Levi, Volansky): NIN layers (``model``), the probe
of training phases (``probe``, ``phases``, ``results``), the NINR comparison (``compare``),
text summaries (``report``) and figures (``plots``, imported on use)."""

from walknoise.nin.compare import CompareConfig, CompareResult, compare, load_compare
from walknoise.nin.config import ProbeConfig
from walknoise.nin.model import NINModel, NoiseInjectionNode, attach_nins, nin_targets
from walknoise.nin.phases import PHASES, PhaseCriteria
from walknoise.nin.probe import probe
from walknoise.nin.report import compare_summary, compare_text, probe_text
from walknoise.nin.results import ProbeResult, load_probe

__all__ = [
    "PHASES",
    "CompareConfig",
    "CompareResult",
    "NINModel",
    "NoiseInjectionNode",
    "PhaseCriteria",
    "ProbeConfig",
    "ProbeResult",
    "attach_nins",
    "compare",
    "compare_summary",
    "compare_text",
    "load_compare",
    "load_probe",
    "nin_targets",
    "probe",
    "probe_text",
]
