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
# Self-binarization where it lives (walknoise/walk/selfbin.py): the cell's own point and layer.
POINT_REPEAT = ("layer", "repeat")
TRAIN_VARIABLES |= {
    "activation_zero_fraction": (
        CELL,
        "fraction of exact zeros of the noisy point's activations (clean test inputs)",
        "1",
    ),
    "activation_bimodality": (
        CELL,
        "(skewness^2+1)/kurtosis of the noisy point's activations (clean test inputs)",
        "1",
    ),
    "onoff_accuracy": (
        CELL,
        "accuracy under the noise with the point's activations replaced by an on/off code",
        "1",
    ),
    "own_layer_binarized_accuracy": (
        CELL,
        "accuracy under the noise with only the layer feeding the point binarized per layer",
        "1",
    ),
    "own_layer_binarized_accuracy_per_channel": (
        CELL,
        "as own_layer_binarized_accuracy with mean|w| per output channel",
        "1",
    ),
    "cross_accuracy": (
        (*CELL, "test_sigma"),
        "accuracy of the noise-trained model under the noise at test_sigma",
        "1",
    ),
    "clean_noisy_accuracy": (CELL, "accuracy of the clean model of the seed under the noise", "1"),
    "clean_onoff_accuracy": (CELL, "onoff_accuracy of the clean model of the seed", "1"),
    "clean_activation_zero_fraction": (
        POINT_REPEAT,
        "activation_zero_fraction of the clean model of the seed",
        "1",
    ),
    "clean_activation_bimodality": (
        POINT_REPEAT,
        "activation_bimodality of the clean model of the seed",
        "1",
    ),
    "init_weight_kurtosis": (
        ("repeat", "param_layer"),
        "Pearson kurtosis of the weights at initialisation (seed + repeat)",
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
    "test_sigma": ("noise level at test time (0, then the scan's sigma grid)", "1"),
}

# σ evaluated beyond the grid to pin each midpoint: by the adaptive search
# (``--midpoint-search``, its whole path) or by the refinement of the grid interval that holds
# the crossing (walknoise/walk/refine.py, only the σ inside it).
MAX_VISITS = 12
SEARCH_VARIABLES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "search_sigma": (
        ("layer", "visit"),
        "sigma evaluated by the midpoint search or refinement, in order",
        "sigma",
    ),
    "search_accuracy": (
        ("layer", "visit", "repeat"),
        "the midpoint metric (midpoint_metric attribute) at search_sigma",
        "1",
    ),
    "search_visits": (("layer",), "number of sigma values evaluated beyond the grid", "1"),
}
SEARCH_COORDS = {"visit": ("evaluation of the midpoint search or refinement, in order", "1")}

# The precision of each midpoint: the two σ it interpolates between, and whether the curve
# rises again (every scan; ``trained_`` ones with a train phase).
MIDPOINT_VARIABLES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "midpoint_bracket_low": (
        ("layer",),
        "largest sigma evaluated with mean accuracy above the midpoint threshold",
        "sigma",
    ),
    "midpoint_bracket_high": (
        ("layer",),
        "next sigma evaluated, at or below the threshold: midpoint interpolates between",
        "sigma",
    ),
    "midpoint_nonmonotone": (
        ("layer",),
        "1 when mean accuracy rises again by more than the repeat spread after the crossing",
        "1",
    ),
}
TRAINED_MIDPOINT_VARIABLES = {
    "trained_" + name: (dims, long_name + " (noise-trained models)", units)
    for name, (dims, long_name, units) in MIDPOINT_VARIABLES.items()
}
MIDPOINT_INT_VARS = {"midpoint_nonmonotone", "trained_midpoint_nonmonotone"}

# Metrics beyond top-1 (walknoise/walk/metrics.py): every eval scan records them.
METRIC_VARIABLES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "topk_accuracy": (CELL, "fraction of samples whose label is among the top-k logits", "1"),
    "agreement": (CELL, "fraction of samples whose argmax equals the clean model's", "1"),
    "kl_divergence": (
        CELL,
        "mean KL(p_clean || p_noisy) of the softmax outputs over finite rows",
        "nat",
    ),
}
