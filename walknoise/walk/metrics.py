"""Numbers computed from model outputs and accuracy curves: accuracy, loss, midpoint noise level.

The midpoint noise level of a layer is the σ at which mean accuracy first falls to halfway
between clean and chance accuracy, interpolated linearly in log σ between the two grid points
that bracket the threshold. Other metrics (top-k accuracy, agreement with the clean model,
KL divergence from it, loss) drive the same code through :class:`Target`, which turns a
rising metric into a falling one by its sign.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike

# midpoint_status values stored in results files
REACHED, NOT_REACHED, BELOW_RANGE = 1, 0, -1


@dataclass
class BatchStats:
    """Running sums for one stack of σ copies: counts per copy. Every metric is kept as a
    per-copy sum over samples, never as a per-batch mean, so that partial sums over some
    batches can be stored and added to later ones."""

    correct: torch.Tensor
    loss_sum: torch.Tensor
    finite: torch.Tensor
    total: int = 0
    topk_correct: torch.Tensor | None = None
    """Samples whose label is among the ``k`` largest logits (finite rows only)."""
    agree: torch.Tensor | None = None
    """Samples whose noisy argmax equals the clean model's (finite rows only)."""
    kl_sum: torch.Tensor | None = None
    """Sum over finite rows of KL(p_clean ‖ p_noisy), in nats."""
    both_finite: torch.Tensor | None = None
    """Rows where the noisy and the clean logits are all finite: kl_sum's count."""
    labelled: bool = True
    """``False`` for data without labels: accuracy, top-k accuracy and loss are then NaN."""

    @classmethod
    def zeros(cls, copies: int, device: torch.device | str) -> BatchStats:
        z = torch.zeros(copies, dtype=torch.float64, device=device)
        return cls(z.clone(), z.clone(), z.clone(), 0, z.clone(), z.clone(), z.clone(), z.clone())

    def add_extra(
        self, sl: slice, logits: torch.Tensor, y: torch.Tensor, clean: torch.Tensor, k: int
    ) -> None:
        """Add one batch's top-k, agreement and KL sums to copies ``sl`` (see :func:`extra`)."""
        assert self.topk_correct is not None and self.agree is not None
        assert self.kl_sum is not None and self.both_finite is not None
        top, agree, kl, fin = extra(logits, y, clean, min(k, logits.shape[-1]))
        self.topk_correct[sl] += top
        self.agree[sl] += agree
        self.kl_sum[sl] += kl
        self.both_finite[sl] += fin

    def add_all(self, sl: slice, sums: tuple[torch.Tensor, ...]) -> None:
        """Add :func:`all_sums` of one batch to copies ``sl`` (unlabelled: no count, no loss)."""
        correct, loss, finite, top, agree, kl, both = sums
        assert self.topk_correct is not None and self.agree is not None
        assert self.kl_sum is not None and self.both_finite is not None
        if self.labelled:
            self.correct[sl] += correct
            self.loss_sum[sl] += loss
        self.finite[sl] += finite
        self.topk_correct[sl] += top
        self.agree[sl] += agree
        self.kl_sum[sl] += kl
        self.both_finite[sl] += both

    def accuracy(self) -> np.ndarray:
        return self._labelled((self.correct / max(self.total, 1)).cpu().numpy())

    def mean_loss(self) -> np.ndarray:
        # 0/0 -> NaN: no finite output
        return self._labelled((self.loss_sum / self.finite).cpu().numpy())

    def _labelled(self, values: np.ndarray) -> np.ndarray:
        return values if self.labelled else np.full_like(values, np.nan)

    def nonfinite_fraction(self) -> np.ndarray:
        return (1 - self.finite / max(self.total, 1)).cpu().numpy()

    def topk_accuracy(self) -> np.ndarray:
        assert self.topk_correct is not None
        return self._labelled((self.topk_correct / max(self.total, 1)).cpu().numpy())

    def agreement(self) -> np.ndarray:
        assert self.agree is not None
        return (self.agree / max(self.total, 1)).cpu().numpy()

    def mean_kl(self) -> np.ndarray:
        assert self.kl_sum is not None and self.both_finite is not None
        return (self.kl_sum / self.both_finite).cpu().numpy()  # 0/0 -> NaN, as mean_loss

    SUMS = ("correct", "loss_sum", "finite", "topk_correct", "agree", "kl_sum", "both_finite")
    """The per-copy sums: what a checkpoint stores, with ``total`` and ``labelled``."""

    def add(self, other: BatchStats) -> None:
        """Add ``other``'s sums (more batches of the same copies) to these."""
        for name in self.SUMS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is not None and theirs is not None:
                mine += theirs
        self.total += other.total

    def rows(self, sl: slice) -> BatchStats:
        """The sums of copies ``sl`` (one repeat of a stacked group), as a view."""
        sums = {n: None if (t := getattr(self, n)) is None else t[sl] for n in self.SUMS}
        return BatchStats(**sums, total=self.total, labelled=self.labelled)  # type: ignore[arg-type]

    def state(self) -> dict[str, object]:
        """The sums as plain tensors and numbers (what ``torch.load(weights_only=True)`` reads)."""
        sums = {n: getattr(self, n).cpu() for n in self.SUMS if getattr(self, n) is not None}
        return {**sums, "total": self.total, "labelled": self.labelled}

    @classmethod
    def from_state(cls, state: dict[str, object], device: torch.device | str) -> BatchStats:
        stats = cls.zeros(len(state["correct"]), device)  # type: ignore[arg-type]
        for name in cls.SUMS:
            if name in state:
                getattr(stats, name).copy_(state[name])
        stats.total, stats.labelled = int(state["total"]), bool(state["labelled"])  # type: ignore[call-overload]
        return stats

    def values(self, metric: str) -> np.ndarray:
        """Per-copy value of ``metric`` (one of :data:`METRICS`)."""
        return {
            "accuracy": self.accuracy,
            "topk": self.topk_accuracy,
            "agreement": self.agreement,
            "kl": self.mean_kl,
            "loss": self.mean_loss,
        }[metric]()


def score(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-copy correct count, summed loss over finite rows and the count of finite rows.

    ``logits`` has shape ``(copies, B, classes)``. A row (sample) with any inf/NaN logit
    counts as a wrong prediction and is left out of the loss: its argmax is undefined (NaN)
    or a tie between infinities, and noise so large that the float32 forward pass overflows
    must neither crash a scan nor poison a cell. So the accuracy of a cell is always a
    number in [0, 1], and it falls to 0 (below chance) where every output overflows, which
    ``nonfinite_fraction`` = 1 then tells apart from a real collapse. The loss is taken in
    float64, where every finite float32 row has a finite loss (a logit gap near 6e38
    overflows float32's log-softmax), so "finite row" means the same for loss and count.
    """
    finite = torch.isfinite(logits).all(dim=-1)
    pred = logits.argmax(dim=-1)
    correct = ((pred == y) & finite).sum(dim=1)
    safe = torch.where(finite.unsqueeze(-1), logits, torch.zeros_like(logits)).double()
    copies, batch, classes = safe.shape
    loss = F.cross_entropy(safe.reshape(-1, classes), y.repeat(copies), reduction="none").reshape(
        copies, batch
    )
    loss_sum = torch.where(finite, loss, torch.zeros_like(loss)).sum(dim=1)
    return correct, loss_sum, finite.sum(dim=1)


def all_sums(
    logits: torch.Tensor, y: torch.Tensor, clean: torch.Tensor, k: int
) -> tuple[torch.Tensor, ...]:
    """:func:`score` and :func:`extra` at once: correct, loss sum, finite rows, top-k correct,
    agreement, KL sum and its rows. On a small model these sums cost more than the forward
    pass, so the noisy logits get one float64 log-sum-exp shared by the loss and the KL
    (KL = Σ p log p − Σ p z + lse(z)), the clean softmax is computed once for every copy,
    and top-k counts rivals instead of sorting."""
    finite = torch.isfinite(logits).all(dim=-1)
    clean_finite = torch.isfinite(clean).all(dim=-1)
    both = finite & clean_finite
    pred = logits.argmax(dim=-1)
    correct = ((pred == y) & finite).sum(dim=1)
    agree = ((pred == clean.argmax(dim=-1)) & finite).sum(dim=1)
    topk_correct = (topk_hits(logits, y, k) & finite).sum(dim=1)
    zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
    z = torch.where(finite.unsqueeze(-1), logits, zero).double()
    lse = torch.logsumexp(z, dim=-1)
    picked = z.gather(-1, y.clamp(min=0).expand(*finite.shape).unsqueeze(-1)).squeeze(-1)
    loss_sum = torch.where(finite, lse - picked, 0.0).sum(dim=1)
    log_p = F.log_softmax(torch.where(clean_finite.unsqueeze(-1), clean, zero).double(), dim=-1)
    p = log_p.exp()
    kl = (p * log_p).sum(dim=-1) - (p * z).sum(dim=-1) + lse
    kl_sum = torch.where(both, kl, 0.0).sum(dim=1)
    return correct, loss_sum, finite.sum(dim=1), topk_correct, agree, kl_sum, both.sum(dim=1)


def topk_hits(logits: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Whether the label is among the top ``k``: fewer than ``k`` classes score strictly
    higher (a tie counts for the label; one comparison pass instead of a sort)."""
    true = logits.gather(-1, y.clamp(min=0).expand(*logits.shape[:-1]).unsqueeze(-1))
    return (logits > true).sum(dim=-1) < k


def extra(
    logits: torch.Tensor, y: torch.Tensor, clean: torch.Tensor, k: int
) -> tuple[torch.Tensor, ...]:
    """Per-copy top-k correct count, agreement count, KL sum and the rows the KL sum covers.

    ``logits`` has shape ``(copies, B, classes)``, ``clean`` the clean model's ``(B,
    classes)`` on the same samples. As in :func:`score`, a row with an inf/NaN noisy logit
    counts as wrong and as a disagreement, and is left out of the KL sum (so is a row whose
    clean logits are not finite). The KL divergence is KL(p_clean ‖ p_noisy) = Σ_c
    p_clean,c (log p_clean,c − log p_noisy,c): the extra nats a code built on the noisy
    model's probabilities spends on the clean model's predictions (a distillation loss). This
    direction, unlike the reverse, stays finite as the noisy output becomes uniform (it
    tends to log C − H(p_clean)), which gives the metric a principled halfway target, and it
    weighs the classes the clean model believes in. Taken in float64, as the loss.
    """
    finite = torch.isfinite(logits).all(dim=-1)
    both = finite & torch.isfinite(clean).all(dim=-1)
    topk_correct = (topk_hits(logits, y, k) & finite).sum(dim=1)
    agree = ((logits.argmax(dim=-1) == clean.argmax(dim=-1)) & finite).sum(dim=1)
    zero = torch.zeros_like(logits)
    log_q = F.log_softmax(torch.where(both.unsqueeze(-1), logits, zero).double(), dim=-1)
    safe_clean = torch.where(both.unsqueeze(-1), clean.expand_as(logits), zero).double()
    log_p = F.log_softmax(safe_clean, dim=-1)
    kl = F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(dim=-1)
    kl_sum = torch.where(both, kl, torch.zeros_like(kl)).sum(dim=1)
    return topk_correct, agree, kl_sum, both.sum(dim=1)


METRICS = ("accuracy", "topk", "agreement", "kl", "loss")
"""Metrics that can drive the midpoint; ``kl`` and ``loss`` rise with the noise."""
LABEL_METRICS = ("accuracy", "topk", "loss")
"""Metrics that need the data's labels."""
RISING = ("kl", "loss")
NEEDS_CLEAN = ("topk", "agreement", "kl")
"""Metrics a runner computes only with ``topk`` set (with the clean pass agreement/KL need)."""


@dataclass(frozen=True)
class Target:
    """Where one metric starts and where noise drives it: the midpoint is the σ at which its
    repeat-mean curve first crosses halfway from ``clean`` to ``end``.

    A rising metric (KL, loss) is handed to :func:`midpoint` and the search negated, so that
    all curves fall: halfway, interpolation in log σ and the "fraction left" of the search
    are unchanged by the sign.
    """

    metric: str
    clean: float
    """Value without noise: clean accuracy or top-k accuracy, 1 for agreement, 0 for KL,
    the clean loss."""
    end: float
    """Value of an output that carries nothing about the input: chance 1/C (accuracy,
    agreement), k/C (top-k), log C (loss of a uniform prediction), the mean
    KL(p_clean ‖ uniform) = log C − H(p_clean) (KL)."""

    @property
    def sign(self) -> float:
        return -1.0 if self.metric in RISING else 1.0

    def falling(self, values: ArrayLike) -> np.ndarray:
        """The curve as :func:`midpoint` wants it: falling from ``clean`` towards ``end``."""
        return self.sign * np.asarray(values, dtype=float)

    @property
    def refs(self) -> tuple[float, float]:
        """``(clean, chance)`` arguments for :func:`midpoint` and the search."""
        return self.sign * self.clean, self.sign * self.end


def midpoint(
    sigmas: np.ndarray, accuracy: np.ndarray, clean: float, chance: float
) -> tuple[float, int]:
    """The midpoint σ of one mean-accuracy curve and its status (``REACHED`` etc.).

    Returns ``(nan, NOT_REACHED)`` when accuracy never falls to the threshold within the grid
    (or holds a NaN), and ``(sigmas[0], BELOW_RANGE)`` when it is already below it at the
    smallest σ.
    """
    acc = np.asarray(accuracy, dtype=float)
    value = float(midpoint_rows(sigmas, acc[None], clean, chance)[0])
    if np.isnan(value):
        return value, NOT_REACHED
    return value, BELOW_RANGE if acc[0] <= chance + (clean - chance) / 2 else REACHED


def midpoint_rows(
    sigmas: np.ndarray, curves: np.ndarray, clean: float, chance: float
) -> np.ndarray:
    """:func:`midpoint`'s value for each row of ``curves`` (``(n, sigma)``) at once (a
    thousand bootstrap resamples cost one array pass): the first σ at or below halfway from
    ``clean`` to ``chance``, interpolated linearly in log σ from the σ before it."""
    acc = np.asarray(curves, dtype=float)
    threshold = chance + (clean - chance) / 2
    below = acc <= threshold
    first = below.argmax(axis=1)
    crosses = below.any(axis=1) & ~np.isnan(acc).any(axis=1)
    out = np.full(len(acc), np.nan)
    out[crosses & (first == 0)] = sigmas[0]
    rows = np.flatnonzero(crosses & (first > 0))
    i = first[rows]
    a0, a1 = acc[rows, i - 1], acc[rows, i]
    t = (a0 - threshold) / (a0 - a1)
    lo, hi = np.log(sigmas[i - 1]), np.log(sigmas[i])
    out[rows] = np.exp(lo + t * (hi - lo))
    return out


def bracket(
    sigmas: np.ndarray, accuracy: np.ndarray, clean: float, chance: float
) -> tuple[float, float]:
    """The two neighbouring σ of one mean-accuracy curve between which ``midpoint``
    interpolates: the uncertainty of the midpoint from interpolation alone (NaN, NaN when
    it is not reached or below the range)."""
    acc = np.asarray(accuracy, dtype=float)
    below = np.flatnonzero(acc <= chance + (clean - chance) / 2)
    if np.isnan(acc).any() or below.size == 0 or below[0] == 0:
        return float("nan"), float("nan")
    return float(sigmas[below[0] - 1]), float(sigmas[below[0]])


# A rise of the mean accuracy smaller than this fraction of (clean − chance) is not called
# a rise even with one repeat (no spread to compare with): at chance a common-random-number
# curve wobbles by a few samples, far less than 2% of the range.
RISE_FLOOR = 0.02


def nonmonotone(accuracy: np.ndarray, clean: float, chance: float) -> bool:
    """Whether the repeat-mean curve rises again after falling to the midpoint threshold.

    ``accuracy`` has shape ``(sigma, repeat)``. From the first σ at or below the threshold
    on, a σ whose mean accuracy exceeds the lowest mean before it by more than the spread
    (max − min over repeats) at both σ, and by more than ``RISE_FLOOR`` of the range, is a
    rise: the curve then has more than one crossing, or a dip the midpoint hides.
    """
    acc = np.asarray(accuracy, dtype=float)
    mean, spread = acc.mean(axis=1), np.ptp(acc, axis=1)
    below = np.flatnonzero(mean <= chance + (clean - chance) / 2)
    if np.isnan(acc).any() or below.size == 0:
        return False
    low = int(below[0])  # index of the lowest mean so far
    for j in range(low + 1, len(mean)):
        if mean[j] < mean[low]:
            low = j
        rise = mean[j] - mean[low]
        if rise > max(spread[j], spread[low], RISE_FLOOR * abs(clean - chance)):
            return True
    return False


@dataclass(frozen=True)
class Midpoint:
    """A layer's midpoint with its spread over repeats."""

    value: float
    status: int
    per_repeat: np.ndarray
    low: float
    high: float
    bracket_low: float = float("nan")
    """σ on either side of the crossing of the mean curve: ``value`` interpolates between."""
    bracket_high: float = float("nan")
    nonmonotone: bool = False
    """The mean curve rises again after falling to the threshold (see :func:`nonmonotone`)."""


def layer_midpoint(
    sigmas: np.ndarray,
    accuracy: np.ndarray,
    clean: float,
    chance: float,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> Midpoint:
    """Midpoint of the repeat-mean curve, per-repeat midpoints, a bootstrap 95% interval,
    the interpolation bracket and the non-monotone flag.

    ``accuracy`` has shape ``(sigma, repeat)``. The interval resamples repeats with
    replacement; resamples that never cross count as +inf, so an interval that reaches past
    the grid has ``high = nan``.
    """
    mean = accuracy.mean(axis=1)
    value, status = midpoint(sigmas, mean, clean, chance)
    b_low, b_high = bracket(sigmas, mean, clean, chance)
    flag = nonmonotone(accuracy, clean, chance)
    per_repeat = np.array(
        [midpoint(sigmas, accuracy[:, r], clean, chance)[0] for r in range(accuracy.shape[1])]
    )
    reps = accuracy.shape[1]
    if reps < 2:
        nan = float("nan")
        return Midpoint(value, status, per_repeat, nan, nan, b_low, b_high, flag)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, reps, size=(n_boot, reps))
    boots = midpoint_rows(sigmas, accuracy[:, idx].mean(axis=2).T, clean, chance)
    boots = np.where(np.isnan(boots), np.inf, boots)
    low = float(np.percentile(boots, 2.5, method="lower"))
    high = float(np.percentile(boots, 97.5, method="higher"))
    low, high = (v if np.isfinite(v) else float("nan") for v in (low, high))
    return Midpoint(value, status, per_repeat, low, high, b_low, b_high, flag)
