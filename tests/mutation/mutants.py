"""The targeted mutants of walknoise's numeric core: each one a bug a user would never see.

A mutant replaces one exact snippet of one source file. ``listed`` marks the survivors of the
mutation run reported in issue 15 (item 8): each must be killed. ``tests`` are the test files
of the mutated module, run first; a mutant they miss is then run against the whole non-slow
suite. A snippet that is no longer in the file is reported as a stale mutant: update it
together with the code it mutates.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    find: str
    replace: str
    tests: tuple[str, ...]
    listed: bool = False


KINDS = "walknoise/noise/kinds.py"
INJECT = "walknoise/noise/inject.py"
SITES = "walknoise/noise/sites.py"
METRICS = "walknoise/walk/metrics.py"
SEARCH = "walknoise/walk/search.py"
SPEC = "walknoise/walk/spec.py"
WEIGHTS = "walknoise/walk/weights.py"
TRAIN = "walknoise/walk/trainphase.py"
RUNNER = "walknoise/walk/runner.py"
PLAN = "walknoise/walk/plan.py"

NOISE_T = (
    "tests/noise/test_kinds.py",
    "tests/noise/test_inject.py",
    "tests/noise/test_exact_numbers.py",
)
SCAN_T = ("tests/walk/test_exact_cells.py", "tests/walk/test_runner.py")
METRICS_T = ("tests/walk/test_metrics.py", "tests/walk/test_exact_numbers.py")
SEARCH_T = ("tests/walk/test_search.py", "tests/walk/test_exact_search.py")
SPEC_T = ("tests/walk/test_spec.py", "tests/walk/test_exact_numbers.py")
WEIGHTS_T = ("tests/walk/test_weights.py", "tests/walk/test_exact_numbers.py")
TRAIN_T = ("tests/walk/test_trainphase.py", "tests/walk/test_exact_cells.py")


def m(
    name: str, path: str, find: str, replace: str, tests: tuple[str, ...], listed: bool = False
) -> Mutant:
    return Mutant(name, path, find, replace, tests, listed)


MUTANTS: list[Mutant] = [
    # --- noise kinds ---------------------------------------------------------------------
    m(
        "multiplicative as y + σ·|y|·ε",
        KINDS,
        "torch.addcmul(y, sigma, y * eps[0])  # y + σ·y·ε",
        "torch.addcmul(y, sigma, y.abs() * eps[0])  # y + σ·y·ε",
        NOISE_T,
        listed=True,
    ),
    m(
        "additive noise with |ε|",
        KINDS,
        "return torch.addcmul(y, sigma, eps[0])\n",
        "return torch.addcmul(y, sigma, eps[0].abs())\n",
        NOISE_T,
    ),
    m(
        "combined: ratio on the multiplicative part",
        KINDS,
        "sigma * (1 - self.ratio), y * eps[0]",
        "sigma * self.ratio, y * eps[0]",
        NOISE_T,
    ),
    m(
        "combined: one ε for both parts",
        KINDS,
        "sigma * self.ratio, eps[1])",
        "sigma * self.ratio, eps[0])",
        NOISE_T,
    ),
    m(
        "combined: ratio 1 refused",
        KINDS,
        "if not 0.0 <= self.ratio <= 1.0:",
        "if not 0.0 <= self.ratio < 1.0:",
        NOISE_T,
    ),
    m(
        "combined ratio lost on reload (to_dict)",
        KINDS,
        'return {"kind": self.kind, "ratio": self.ratio}',
        'return {"kind": self.kind}',
        NOISE_T,
        listed=True,
    ),
    m(
        "combined ratio lost on reload (from dict)",
        KINDS,
        'ratio = d.get("ratio", 0.5)',
        "ratio = 0.5",
        NOISE_T,
        listed=True,
    ),
    m(
        "make_noise ignores ratio",
        KINDS,
        "return Combined(ratio=ratio)",
        "return Combined()",
        NOISE_T,
    ),
    # --- injection -----------------------------------------------------------------------
    m(
        "seed hash byte order flipped",
        INJECT,
        'int.from_bytes(digest[:8], "little")',
        'int.from_bytes(digest[:8], "big")',
        NOISE_T,
        listed=True,
    ),
    m(
        "seed hash ignores the repeat order",
        INJECT,
        'f"walknoise:{seed}:{layer}:{repeat}"',
        'f"walknoise:{seed}:{repeat}:{layer}"',
        NOISE_T,
    ),
    m(
        "inject() ignores its generator",
        INJECT,
        "[generator] * len(layers)",
        "[None] * len(layers)",
        NOISE_T,
        listed=True,
    ),
    m(
        "fan-out batch check disabled (hook)",
        INJECT,
        "if n not in (batch, copies * batch):",
        "if False:",
        NOISE_T,
        listed=True,
    ),
    m(
        "float16 noise computed in float16",
        INJECT,
        "work = base.float() if base.dtype in (torch.float16, torch.bfloat16) else base",
        "work = base",
        NOISE_T,
        listed=True,
    ),
    m(
        "point scale ignored by the hook",
        INJECT,
        "sig = (fo.sigmas * self.scale)",
        "sig = (fo.sigmas * 1.0)",
        NOISE_T + SCAN_T,
    ),
    m(
        "ε cache off: σ chunks draw anew",
        INJECT,
        "if self.cache_eps and key in self._eps:",
        "if False:",
        NOISE_T + SCAN_T,
    ),
    m(
        "extra outputs of a module dropped",
        SITES,
        "items = [new, *out[1:]]",
        "items = [new]",
        NOISE_T,
        listed=True,
    ),
    m("extra inputs at <input> dropped", SITES, "else (new, *args[1:])", "else (new,)", NOISE_T),
    # --- scan cells (relative σ, clean std, fan-out decision) -----------------------------
    m(
        "relative σ ignored (plan)",
        PLAN,
        "scales = {p: (clean.output_std[p] if spec.relative else 1.0) for p in chosen}",
        "scales = {p: 1.0 for p in chosen}",
        SCAN_T,
        listed=True,
    ),
    m(
        "clean std without centring",
        RUNNER,
        "max(sq / n - mean * mean, 0.0)",
        "max(sq / n, 0.0)",
        SCAN_T,
    ),
    m(
        "fan-out batch check disabled (runner)",
        RUNNER,
        "if out.shape[0] == copies * len(xb):",
        "if True:",
        SCAN_T,
        listed=True,
    ),
    # --- metrics -------------------------------------------------------------------------
    m(
        "midpoint NaN guard removed",
        METRICS,
        "if np.isnan(acc).any():",
        "if False:",
        METRICS_T,
        listed=True,
    ),
    m(
        "bootstrap NaN guard removed",
        METRICS,
        "boots = np.where(np.isnan(boots), np.inf, boots)",
        "boots = boots",
        METRICS_T,
        listed=True,
    ),
    m(
        "loss finiteness check removed",
        METRICS,
        "ok = finite & torch.isfinite(loss)",
        "ok = finite",
        METRICS_T,
        listed=True,
    ),
    m(
        "non-finite rows counted correct",
        METRICS,
        "correct = ((pred == y) & finite).sum(dim=1)",
        "correct = (pred == y).sum(dim=1)",
        METRICS_T,
    ),
    m(
        "mean loss over all rows",
        METRICS,
        "(self.loss_sum / self.finite)",
        "(self.loss_sum / max(self.total, 1))",
        METRICS_T,
    ),
    m(
        "non-finite fraction inverted",
        METRICS,
        "(1 - self.finite / max(self.total, 1))",
        "(self.finite / max(self.total, 1))",
        METRICS_T,
    ),
    m(
        "midpoint threshold a quarter of the way",
        METRICS,
        "threshold = chance + (clean - chance) / 2",
        "threshold = chance + (clean - chance) / 4",
        METRICS_T,
    ),
    m(
        "midpoint: strict threshold",
        METRICS,
        "below = np.flatnonzero(acc <= threshold)",
        "below = np.flatnonzero(acc < threshold)",
        METRICS_T,
    ),
    m(
        "midpoint: geometric mean of the bracket",
        METRICS,
        "np.exp(lo + t * (hi - lo))",
        "np.exp(lo + 0.5 * (hi - lo))",
        METRICS_T,
    ),
    m("midpoint: below-range case lost", METRICS, "if i == 0:", "if i < 0:", METRICS_T),
    m(
        "bootstrap interval at 25%",
        METRICS,
        'np.percentile(boots, 2.5, method="lower")',
        'np.percentile(boots, 25, method="lower")',
        METRICS_T,
    ),
    m("bootstrap of a single repeat", METRICS, "if reps < 2:", "if reps < 1:", METRICS_T),
    m(
        "per-repeat midpoints all of repeat 0",
        METRICS,
        "midpoint(sigmas, accuracy[:, r], clean, chance)",
        "midpoint(sigmas, accuracy[:, 0], clean, chance)",
        METRICS_T,
    ),
    # --- midpoint search -----------------------------------------------------------------
    m(
        "Illinois halving removed (a side)",
        SEARCH,
        "fb = fb / 2 if side == -1 else fb",
        "fb = fb",
        SEARCH_T,
        listed=True,
    ),
    m(
        "Illinois halving removed (b side)",
        SEARCH,
        "fa = fa / 2 if side == 1 else fa",
        "fa = fa",
        SEARCH_T,
        listed=True,
    ),
    m(
        "search interval guard 5% -> 25%",
        SEARCH,
        "c = min(max(c, a + 0.05 * (b - a)), b - 0.05 * (b - a))",
        "c = min(max(c, a + 0.25 * (b - a)), b - 0.25 * (b - a))",
        SEARCH_T,
        listed=True,
    ),
    m(
        "search budget 12 -> 5",
        SEARCH,
        "max_evals: int = 12,",
        "max_evals: int = 5,",
        SEARCH_T,
        listed=True,
    ),
    m(
        "search tolerance test loosened 4x",
        SEARCH,
        "abs(estimate - previous) <= math.log1p(rtol) / 2",
        "abs(estimate - previous) <= math.log1p(rtol) * 2",
        SEARCH_T,
        listed=True,
    ),
    m(
        "search bracket test loosened 4x",
        SEARCH,
        "b - a <= math.log1p(rtol)",
        "b - a <= 4 * math.log1p(rtol)",
        SEARCH_T,
    ),
    m(
        "search 'near' test loosened 4x",
        SEARCH,
        "near = abs(seen[c]) <= 0.02 * abs(clean - chance)",
        "near = abs(seen[c]) <= 0.08 * abs(clean - chance)",
        SEARCH_T,
    ),
    m("search: below-range strict", SEARCH, "if seen[a] <= 0:", "if seen[a] < 0:", SEARCH_T),
    m(
        "search: logit clip removed",
        SEARCH,
        "left = min(max(left, 1e-3), 1 - 1e-3)",
        "left = left",
        SEARCH_T,
    ),
    m(
        "search answer: bracket centre",
        SEARCH,
        "return a + (fa / (fa - fb) if fa != fb else 0.5) * (b - a)",
        "return (a + b) / 2",
        SEARCH_T,
    ),
    # --- spec validation and identity ----------------------------------------------------
    m(
        "σ validation lets inf through",
        SPEC,
        "if not np.all(np.isfinite(arr)) or np.any(arr <= 0):",
        "if np.any(arr <= 0):",
        SPEC_T,
        listed=True,
    ),
    m(
        "σ validation lets 0 through",
        SPEC,
        "if not np.all(np.isfinite(arr)) or np.any(arr <= 0):",
        "if not np.all(np.isfinite(arr)) or np.any(arr < 0):",
        SPEC_T,
        listed=True,
    ),
    m(
        "σ duplicates accepted",
        SPEC,
        "if np.any(np.diff(arr) <= 0):",
        "if np.any(np.diff(arr) < 0):",
        SPEC_T,
    ),
    m(
        "clamp of 0 accepted",
        SPEC,
        "if self.clamp is not None and not self.clamp > 0:",
        "if self.clamp is not None and self.clamp < 0:",
        SPEC_T,
        listed=True,
    ),
    m(
        "midpoint_search accepted with the train phase",
        SPEC,
        'if self.midpoint_search and self.phase != "eval":',
        'if self.midpoint_search and self.phase == "both":',
        SPEC_T,
        listed=True,
    ),
    m(
        "σ-count limit ignores repeats",
        SPEC,
        "if len(self.sigmas) * self.repeats > MAX_CELLS:",
        "if len(self.sigmas) > MAX_CELLS:",
        SPEC_T,
        listed=True,
    ),
    m(
        "runtime fields kept in the identity",
        SPEC,
        'RUNTIME_FIELDS = ("device", "max_batch")',
        'RUNTIME_FIELDS = ("device",)',
        SPEC_T,
        listed=True,
    ),
    m(
        "spec ratio lost on reload",
        SPEC,
        "kwargs = {k: v for k, v in raw.items() if k in names}",
        'kwargs = {k: v for k, v in raw.items() if k in names and k != "ratio"}',
        SPEC_T,
    ),
    m("rtol of 1 accepted", SPEC, "not 0 < self.rtol < 1", "not 0 < self.rtol <= 1", SPEC_T),
    m(
        "repeats not validated",
        SPEC,
        'for name in ("repeats", "batch_size", "max_batch"):',
        'for name in ("batch_size", "max_batch"):',
        SPEC_T,
    ),
    # --- weight statistics ---------------------------------------------------------------
    m(
        "kurtosis without centring",
        WEIGHTS,
        "d = x - x.mean()\n    m2 = (d**2).mean()\n    return",
        "d = x\n    m2 = (d**2).mean()\n    return",
        WEIGHTS_T,
        listed=True,
    ),
    m(
        "skewness with the wrong power",
        WEIGHTS,
        "skew = (d**3).mean() / m2**1.5",
        "skew = (d**3).mean() / m2**2",
        WEIGHTS_T,
        listed=True,
    ),
    m(
        "bimodality with |skew|",
        WEIGHTS,
        "(skew**2 + 1)",
        "(abs(skew) + 1)",
        WEIGHTS_T,
        listed=True,
    ),
    m(
        "bimodality without centring",
        WEIGHTS,
        "d = x - x.mean()\n    m2 = (d**2).mean()\n    if m2",
        "d = x\n    m2 = (d**2).mean()\n    if m2",
        WEIGHTS_T,
    ),
    m(
        "mode fraction against an absolute tolerance",
        WEIGHTS,
        "(a - m).abs() <= tolerance * m",
        "(a - m).abs() <= tolerance",
        WEIGHTS_T,
        listed=True,
    ),
    m(
        "mode fraction tolerance 20%",
        WEIGHTS,
        "tolerance: float = 0.1",
        "tolerance: float = 0.2",
        WEIGHTS_T,
    ),
    m(
        "histogram edge from max(w)",
        WEIGHTS,
        "edge = float(w.abs().max()) or 1.0",
        "edge = float(w.max()) or 1.0",
        WEIGHTS_T,
        listed=True,
    ),
    m(
        "histogram not a density",
        WEIGHTS,
        "(counts / (counts.sum() * (2 * edge / bins)))",
        "(counts / counts.sum())",
        WEIGHTS_T,
    ),
    m(
        "1-D parameters counted as weight layers",
        WEIGHTS,
        "m.weight.dim() >= 2",
        "m.weight.dim() >= 1",
        WEIGHTS_T,
        listed=True,
    ),
    m(
        "one growth statistic dropped",
        WEIGHTS,
        'GROWTH = ("weight_l2", "weight_mean_abs", "weight_max_abs")',
        'GROWTH = ("weight_l2", "weight_mean_abs")',
        WEIGHTS_T + TRAIN_T,
        listed=True,
    ),
    m(
        "one weight statistic dropped",
        WEIGHTS,
        '"weight_max_abs": Stat("largest absolute weight", max_abs),\n',
        "",
        WEIGHTS_T + TRAIN_T,
    ),
    m(
        "binarized scale from max|w|",
        WEIGHTS,
        "torch.sign(w) * w.abs().mean()",
        "torch.sign(w) * w.abs().max()",
        WEIGHTS_T,
    ),
    m(
        "clamp only from below",
        WEIGHTS,
        ".clamp_(-bound, bound)",
        ".clamp_(-bound, 10 * bound)",
        WEIGHTS_T,
    ),
    # --- train phase ---------------------------------------------------------------------
    m(
        "weight growth as values/values",
        TRAIN,
        "growth = np.asarray(values) / np.asarray(ref[name])",
        "growth = np.asarray(values) / np.asarray(values)",
        TRAIN_T,
        listed=True,
    ),
    m(
        "growth against the clean model of seed 0",
        TRAIN,
        "ref = weight_stats(self.clean_model(r), names)",
        "ref = weight_stats(self.clean_model(0), names)",
        TRAIN_T,
    ),
    m(
        "binarized accuracy of the unbinarized model",
        TRAIN,
        "binarized(model, names), layer, points, sigma, r, scales",
        "model, layer, points, sigma, r, scales",
        TRAIN_T,
    ),
    m(
        "clamp ignored in training",
        TRAIN,
        "on_step = None if clamp is None else (lambda m, _s, _l: clamp_weights(m, clamp))",
        "on_step = None",
        TRAIN_T,
    ),
    m(
        "train phase overrides ignored",
        TRAIN,
        "train |= {k: v for k, v in overrides.items() if v is not None}",
        "pass",
        TRAIN_T,
    ),
]
