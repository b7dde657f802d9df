"""The pack linter's performance check: a one-year backtest of the pack's default strategy.

The pack is judged on the seeded synthetic market (so it needs no data download):
three tickers, or one with ticks for tick-level strategies, at the pack's cadence,
with enough history before the year for the out-of-fold model to learn. The year is
backtested with the pack's defaults and the lowest of its sweep thresholds, across the
tickers cross-sectionally, deciding at each bar's close (the synthetic market has
bars of the pack's cadence only, not the intervals a pack evaluating inside its bars
decides at); the linter then asks for at least 10 trades and a
Sharpe ratio above -0.5. The probabilities are calibrated (the scale a trained model
emits), so on the synthetic market's weak signal they sit near the base rate: the
check asks whether the default strategy trades without losing, at the pack's most
permissive entry, not whether it clears its stricter ones.
"""

from __future__ import annotations

from engine.calendar import CALENDARS, bars_per_year
from engine.features import needs_ticks
from engine.models import SweepRequest, create_model
from engine.packs import BacktestSummary, Pack
from research.backtest import run
from research.sweep import build_market, config_row
from research.synthetic import generate

__all__ = ["pack_performance"]

# Enough history before the year for indicators to warm up and the first folds to learn.
_HISTORY_YEARS = {"minute": 1.25, "hour": 3, "day": 5, "week": 25, "month": 60}


def pack_performance(pack: Pack, seed: int = 7) -> BacktestSummary:
    """Trades and Sharpe of the default strategy over the last year of a synthetic market."""
    us = CALENDARS["us_equities"]
    strategy = next(iter(pack.strategies))
    recipe = pack.strategies[strategy]
    ticks = any(needs_ticks(indicator) for indicator in recipe.indicators)
    tickers = ["SYNA"] if ticks else ["SYNA", "SYNB", "SYNC"]
    symbol = {"stocks": "ticker", "options": "underlying", "futures": "contract"}[pack.default_instrument]
    spec = create_model(pack, strategy=strategy, settings={symbol: tickers[0]}, evaluation=pack.cadence)
    per_year = bars_per_year(us, pack.cadence)
    timescale = {"m": "minute", "h": "hour", "d": "day", "w": "week", "o": "month"}[pack.cadence[-1]]
    sessions = int(252 * _HISTORY_YEARS[timescale])
    market = generate(tickers, pack.cadence, sessions, us, seed=seed, ticks=ticks)
    request = SweepRequest(model=spec.name, seed=seed)
    prepared = build_market([(bars, ticks, None) for bars, ticks in market.values()], us, spec, recipe.label, request)
    year = prepared.market.window(slice(max(0, len(prepared.market) - int(per_year)), len(prepared.market)))
    names = ["threshold"]
    config = config_row(names, [min(pack.sweep.simple.thresholds)], pack, spec, request, len(tickers))
    results, _ = run(year, config[None, :])
    return BacktestSummary(trades=int(results[0, 3]), sharpe=float(results[0, 0]))
