"""Variables of the train phase in the results file (see docs/results-format.md)."""

from __future__ import annotations

from walknoise.walk.weights import GROWTH, STATS

CELL = ("layer", "sigma", "repeat")
WEIGHT = (*CELL, "param_layer")
HIST_BINS = 64

TRAIN_VARIABLES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "trained_accuracy": (CELL, "accuracy of the model trained and evaluated with the noise", "1"),
    "trained_accuracy_drop": (CELL, "clean-model accuracy minus trained_accuracy", "1"),
    "trained_loss": (CELL, "mean cross-entropy of the noise-trained model under noise", "nat"),
    "binarized_accuracy": (
        CELL,
        "accuracy under the noise of the model binarized as sign(w)*mean|w| per layer",
        "1",
    ),
    "trained_midpoint": (("layer",), "midpoint noise level of the noise-trained models", "sigma"),
    "trained_midpoint_status": (("layer",), "1 reached, 0 not reached, -1 below sigma min", "1"),
    "trained_midpoint_low": (("layer",), "bootstrap 2.5% quantile of trained_midpoint", "sigma"),
    "trained_midpoint_high": (("layer",), "bootstrap 97.5% quantile of trained_midpoint", "sigma"),
    "trained_layer_done": (("layer",), "1 when every train-phase cell of the layer is done", "1"),
    "clean_model_accuracy": (
        ("repeat",),
        "clean test accuracy of the clean model of each seed",
        "1",
    ),
    "weight_hist": (
        (*WEIGHT, "bin"),
        "weight histogram (density) on 64 bins over [-max|w|, max|w|]",
        "1",
    ),
    "clean_weight_hist": (
        ("repeat", "param_layer", "bin"),
        "weight histogram of the clean model of each seed",
        "1",
    ),
}
for _name, _stat in STATS.items():
    TRAIN_VARIABLES[_name] = (WEIGHT, _stat.long_name, "1")
    TRAIN_VARIABLES["clean_" + _name] = (
        ("repeat", "param_layer"),
        _stat.long_name + " (clean model)",
        "1",
    )
for _name in GROWTH:
    TRAIN_VARIABLES[_name.replace("weight_", "growth_")] = (
        WEIGHT,
        f"{STATS[_name].long_name}: noise-trained / clean model of the same seed",
        "1",
    )

TRAIN_INT_VARS = {"trained_midpoint_status", "trained_layer_done"}
TRAIN_COORDS = {
    "param_layer": ("parametrised layer (named_modules() name of a Linear/Conv)", ""),
    "bin": ("histogram bin", "1"),
}

# Adaptive midpoint search (``--midpoint-search``): the σ values each layer's search visited.
MAX_VISITS = 12
SEARCH_VARIABLES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "search_sigma": (
        ("layer", "visit"),
        "sigma evaluated by the midpoint search, in order",
        "sigma",
    ),
    "search_accuracy": (("layer", "visit", "repeat"), "accuracy at search_sigma", "1"),
    "search_visits": (("layer",), "number of sigma values the search evaluated", "1"),
}
SEARCH_COORDS = {"visit": ("evaluation of the midpoint search, in order", "1")}
