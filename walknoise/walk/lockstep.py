"""Run several sequential searches side by side, their probes of each round in one batch.

Each layer's midpoint search (or refinement) asks for one σ at a time and decides the next
from the answer. Run one layer after another, every probe is a pass over the data; run in
lockstep, the probes all layers ask for in a round share one pass: the data is read once per
round instead of once per probe. Each search runs in a thread of its own that only waits for
its answers; all model work happens in the caller's thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")
Probe = Callable[[float], np.ndarray]
Evaluate = Callable[[Mapping[int, float]], Mapping[int, np.ndarray]]


class Cancelled(Exception):
    """Raised in a search thread when the round loop stopped (an error or Ctrl-C)."""


class Lockstep(Generic[T]):
    """``run(searches)`` yields ``(i, result)`` of each search as it finishes."""

    def __init__(self, evaluate: Evaluate) -> None:
        """``evaluate({i: σ})`` answers every probe of a round: ``{i: values}``."""
        self.evaluate = evaluate
        self.rounds = 0
        self._cond = threading.Condition()
        self._asked: dict[int, float] = {}
        self._answers: dict[int, np.ndarray] = {}
        self._done: dict[int, T] = {}
        self._failed: dict[int, BaseException] = {}
        self._cancelled = False

    def run(self, searches: Sequence[Callable[[Probe], T]]) -> Iterator[tuple[int, T]]:
        threads = [
            threading.Thread(target=self._search, args=(i, s), daemon=True)
            for i, s in enumerate(searches)
        ]
        for t in threads:
            t.start()
        live = set(range(len(searches)))
        try:
            while live:
                asked, finished = self._wait(live)
                for i in finished:
                    live.discard(i)
                    yield i, self._done.pop(i)
                if asked:
                    answers = self.evaluate(asked)
                    self.rounds += 1
                    with self._cond:
                        self._answers.update(answers)
                        self._cond.notify_all()
        finally:
            with self._cond:
                self._cancelled = True
                self._cond.notify_all()
            for t in threads:
                t.join()

    def _wait(self, live: set[int]) -> tuple[dict[int, float], list[int]]:
        """Until every live search has asked or finished: the round's probes, the finished."""
        with self._cond:
            self._cond.wait_for(lambda: all(self._settled(i) for i in live))
            if self._failed:
                raise next(iter(self._failed.values()))
            asked = {i: s for i, s in self._asked.items() if i in live}
            self._asked.clear()
            return asked, [i for i in live if i in self._done]

    def _settled(self, i: int) -> bool:
        return i in self._asked or i in self._done or i in self._failed

    def _search(self, i: int, search: Callable[[Probe], T]) -> None:
        try:
            result = search(lambda sigma: self._probe(i, sigma))
        except Cancelled:
            return
        except BaseException as err:  # handed to the caller's thread
            with self._cond:
                self._failed[i] = err
                self._cond.notify_all()
            return
        with self._cond:
            self._done[i] = result
            self._cond.notify_all()

    def _probe(self, i: int, sigma: float) -> np.ndarray:
        with self._cond:
            self._asked[i] = sigma
            self._cond.notify_all()
            self._cond.wait_for(lambda: i in self._answers or self._cancelled)
            if i not in self._answers:
                raise Cancelled
            return self._answers.pop(i)
