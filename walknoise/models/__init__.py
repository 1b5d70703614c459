"""Model zoo, ``--arch`` resolution and checkpoint save/load."""

from walknoise.models.checkpoint import LoadedModel, load_model, save_checkpoint
from walknoise.models.zoo import ARCHS, build_model, cnn, lenet5, mlp, resolve_factory

__all__ = [
    "ARCHS",
    "LoadedModel",
    "build_model",
    "cnn",
    "lenet5",
    "load_model",
    "mlp",
    "resolve_factory",
    "save_checkpoint",
]
