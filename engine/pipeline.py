"""The per-ticker pipeline: bars (and ticks) in, a feature row and a calibrated probability out.

One object per (model, ticker) holds the incremental feature state and a `Scorer`
bound to the model's manifest. The live flow calls it from a keyed step; research
calls it in a plain loop to backtest an exported model exactly as it will run.
"""

from __future__ import annotations

import math

import numpy as np

from engine.features import TICK_FIELDS, FeatureVector, model_features, warmup_bars
from engine.scoring import Scorer
from engine.snapshot import state

__all__ = ["Pipeline"]


@state(derived=("scorer",))
class Pipeline:
    """Features and score of one model on one ticker, one bar at a time (the policy decides in `engine.signals`)."""

    __slots__ = ("scorer", "features", "_row")

    def __init__(self, scorer: Scorer) -> None:
        manifest = scorer.manifest
        features = model_features(manifest.features, manifest.indicators)
        scorer.check([f.name for f in features], np.float32, warmup_bars(features, manifest.indicators))
        self.scorer = scorer
        self.features = FeatureVector(features, manifest.indicators)
        self._row = np.empty((1, len(features)), dtype=np.float32)

    def rebuild(self) -> None:
        # An ONNX session is no state: a snapshot keeps the features, and `bind` puts the model's scorer back.
        self.scorer = None

    def bind(self, scorer: Scorer) -> None:
        """Score with ``scorer`` (the same model, reloaded after a restore)."""
        self.scorer = scorer

    def update_tick(self, ts: float, price: float, size: float, bid: float, ask: float, bid_size: float, ask_size: float) -> None:
        """Feed one tick (for models with tick indicators)."""
        self.features.update_tick(ts, price, size, bid, ask, bid_size, ask_size)

    def update_bar(self, open: float, high: float, low: float, close: float, volume: float, session: float) -> float:  # noqa: A002
        """Feed one closed bar; returns the model's calibrated probability, NaN until every feature is warm."""
        row = self.update_features(open, high, low, close, volume, session)
        return math.nan if row is None else float(self.scorer.score(row)[0])

    def update_features(self, open: float, high: float, low: float, close: float, volume: float, session: float) -> np.ndarray | None:  # noqa: A002
        """Feed one closed bar; returns its feature row (1 x features, float32, reused by the next bar), None until warm.

        The live flow scores the rows of many tickers' bar closes in one ONNX call.
        """
        values = self.features.update_bar(open, high, low, close, volume, session)
        if not self.features.ready:
            return None
        self._row[0] = values
        return self._row

    def replay(self, bars, session: np.ndarray, ticks: dict[str, np.ndarray] | None = None, *, score: bool = True) -> np.ndarray:
        """Feed a stored history (`engine.bars.Bars`, its session numbers, its tick table) as the live flow sees it.

        Each bar's ticks come before its close. Returns each bar's probability, or,
        with ``score`` off (warming a live pipeline up), only updates the features.
        """
        probabilities = np.full(len(bars), np.nan)
        columns = [ticks[name] for name in TICK_FIELDS] if ticks is not None else []
        taken = 0
        for t in range(len(bars)):
            if columns:
                until = int(np.searchsorted(columns[0], bars.end[t], side="left"))
                for i in range(taken, until):
                    self.features.update_tick(*(float(column[i]) for column in columns))
                taken = max(taken, until)
            if score:
                probabilities[t] = self.update_bar(bars.open[t], bars.high[t], bars.low[t], bars.close[t], bars.volume[t], session[t])
            else:
                self.features.update_bar(bars.open[t], bars.high[t], bars.low[t], bars.close[t], bars.volume[t], session[t])
        return probabilities
