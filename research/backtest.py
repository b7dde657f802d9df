"""The vectorised backtester: many execution configurations over one set of probabilities.

A `Market` is a universe of tickers on one time axis (T bars x N tickers, NaN where a
ticker has no bar) with the model's probability for each bar. A configuration is one
`engine.policy.Policy` as a row of floats (`PARAMETERS`). ``run`` backtests every
configuration with a compiled loop, several at once; ``trades`` replays one
configuration and lists its trades. Each bar goes through `engine.book.step`, the
policy kernel the live flow runs at each bar close, so a backtest and a replay of the
same bars take the same decisions (its docstring has the rules, in order).

Accounting: each trade commits its size of equity; its bar-by-bar return, relative to
its entry price, adds into the portfolio's return for that bar, and commission is
charged on entry and on exit. Equity compounds those bar returns. Sharpe is
annualised with the calendar's bars per year.

Options: a configuration with ``expiry_sessions`` >= 0 trades calls and puts on the
tickers instead of the tickers themselves. Its trades are priced with
`engine.options` from the underlying's bar (the high and low at the bar's close time,
the open at its open), the contract (listed strike and expiry) and volatility fixed
at the decision, the time left from the market's session clock. Prices and slippage are then premiums; stops and
targets stay on the underlying (a 5% stop means the stock moved 5% against the view,
whatever is held), and an option leaves at its value at the level.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import msgspec
import numba
import numpy as np

from engine._jit import helper, kernel, load
from engine.book import EVENT_COLUMNS, LOG_COLUMNS, OPEN, empty, rank, skip, step
from engine.policy import EXIT_REASONS, PARAMETERS

__all__ = ["Market", "PARAMETERS", "METRICS", "Trade", "Decision", "run", "trades", "replay", "summarise", "BLOCKS"]

METRICS = (
    "sharpe", "total_return", "max_drawdown", "trades", "win_rate", "profit_factor", "exposure",
    "mean", "std", "skew", "kurtosis", "bars",
)  # fmt: skip
"""Columns of a result row; mean, std, skew and kurtosis are of per-bar returns."""
BLOCKS = 10
"""Equal time blocks whose per-bar return sums are kept (fold dispersion, PBO)."""

_MAXPOS = PARAMETERS.index("max_positions")
_EXPIRY = PARAMETERS.index("expiry_sessions")

Contracts = Callable[[int], tuple[np.ndarray, np.ndarray]]
"""A market's option contract rule: for a target of sessions to expiry, the expiry of the option an entry decided at
each bar buys, on the market's session clock and as a day number (`engine.options.contract_expiry`)."""


class Market:
    """A universe on one time axis: prices and probabilities as (bars x tickers) arrays.

    Options decay on the session clock: ``opened`` and ``closed`` are the trading
    sessions elapsed at each bar's open and close (`engine.calendar.session_clock`),
    ``sessions_per_year`` the calendar's; ``volatility`` is each ticker's annualised
    volatility known at the bar's close. By default every bar is a whole session and
    no volatility is known, so option configurations cannot trade. ``contracts`` is
    the listed expiry rule; without one every session lists an expiry, and a target
    of ``d`` sessions expires ``d`` sessions after the one an entry fills in (day
    numbers unknown). Cooldowns run on ``end`` (each bar's end, ns; by default its
    start) and the daily cap on ``session`` (each bar's session date; by default the
    whole session clock's). A model evaluated inside its bars has a row per evaluation
    point: ``closes`` is 1 where a row closes a bar of its cadence (by default every
    row), and its time stops count those.
    """

    __slots__ = (
        "tickers", "start", "end", "hour", "session", "open", "high", "low", "close", "probability", "ranking",
        "confidence", "periods_per_year", "opened", "closed", "sessions_per_year", "volatility", "closes", "_contracts", "_listed",
    )  # fmt: skip

    def __init__(
        self, tickers, start, hour, open, high, low, close, probability, periods_per_year: float,  # noqa: A002
        *, opened=None, closed=None, sessions_per_year: float | None = None, volatility=None, end=None, session=None,
        closes=None, contracts: Contracts | None = None,
    ) -> None:
        self.tickers = list(tickers)
        self.start = np.asarray(start, dtype=np.int64)
        self.hour = np.ascontiguousarray(hour, dtype=np.int64)
        self.open, self.high, self.low, self.close = (np.ascontiguousarray(a, dtype=np.float64) for a in (open, high, low, close))
        self.probability = np.ascontiguousarray(probability, dtype=np.float64)
        bars = len(self.start)
        if any(a.shape != (bars, len(self.tickers)) for a in (self.open, self.high, self.low, self.close, self.probability)):
            raise ValueError(f"a market of {bars} bars x {len(self.tickers)} tickers needs its prices and probabilities in that shape")
        self.opened = np.ascontiguousarray(np.arange(bars) if opened is None else opened, dtype=np.float64)
        self.closed = np.ascontiguousarray(self.opened + 1.0 if closed is None else closed, dtype=np.float64)
        self.sessions_per_year = float(periods_per_year if sessions_per_year is None else sessions_per_year)
        self.volatility = np.ascontiguousarray(np.full(self.close.shape, np.nan) if volatility is None else volatility, dtype=np.float64)
        self.end = np.ascontiguousarray(self.start if end is None else end, dtype=np.int64)
        self.session = np.ascontiguousarray(np.floor(self.opened) if session is None else session, dtype=np.int64)
        self.closes = np.ascontiguousarray(np.ones(bars) if closes is None else closes, dtype=np.int64)
        # Tickers by falling confidence at each bar, ranked once per market by the rule the live step ranks with.
        self.ranking = np.zeros(self.close.shape, dtype=np.int64)
        self.confidence = np.zeros(bars)
        _rank_all(self.probability, self.close, self.ranking, self.confidence)
        self.periods_per_year = float(periods_per_year)
        self._contracts = contracts
        self._listed: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.start)

    def window(self, rows: slice) -> Market:
        """The market restricted to the bars in ``rows``."""
        window = Market.__new__(Market)
        for name in self.__slots__:
            value = getattr(self, name)
            setattr(window, name, value[rows] if isinstance(value, np.ndarray) else value)
        window._contracts = lambda target: tuple(values[rows] for values in self.contract(target))
        window._listed = {}
        return window

    def contract(self, target: int) -> tuple[np.ndarray, np.ndarray]:
        """(session clock, day number) of the expiry an option entry decided at each bar buys, for ``target`` sessions."""
        found = self._listed.get(target)
        if found is None:
            if self._contracts is None:
                found = np.floor(self.closed) + (target + 1.0), np.full(len(self), np.nan)
            else:
                found = tuple(np.ascontiguousarray(values, dtype=np.float64) for values in self._contracts(target))
            found = self._listed[target] = found
        return found


class Trade(msgspec.Struct, frozen=True):
    """One round trip of a configuration's backtest."""

    ticker: str
    direction: int
    entry_bar: int
    entry_price: float
    exit_bar: int
    exit_price: float
    reason: str
    net_return: float
    """Return on the committed capital, after slippage and both commissions."""
    strike: float = math.nan
    """The option's strike (prices are then premiums); NaN for a trade in the ticker itself."""
    size: float = math.nan
    """The share of equity the trade committed."""
    expiry: int = -1
    """The option's expiry as a day number; -1 for the ticker itself or a market without a listed expiry rule."""


@helper
def _simulate(open_, high, low, close, probability, ranking, confidence, hour, session, end, closes, clock, volatility, config,
              returns, log, events, event_bars):  # fmt: skip
    """Backtest one configuration through the policy kernel; fills ``returns`` per bar; returns its tally and events written.

    ``log`` takes the round trips and ``events`` (with ``event_bars``) every decision, as
    far as they have room: a sweep gives them none.
    """
    opened, closed, sessions_per_year, expires, expiry_days = clock
    bars, tickers = close.shape
    slot_ints, slot_floats, order_ints, order_floats, ticker_state, counters, tally = empty(np.int64(config[_MAXPOS]), tickers)
    written = 0
    t = 0
    while t < bars:
        acts = skip(counters, config, confidence, hour, session, closes, t, bars)
        returns[t:acts] = 0.0
        t = acts
        if t == bars:
            break
        returns[t], now = step(slot_ints, slot_floats, order_ints, order_floats, ticker_state, counters, tally, config,
                               open_, high, low, close, probability, ranking, volatility, t, confidence[t], hour[t], session[t],
                               end[t], closes[t], opened[t], closed[t], sessions_per_year, expires[t], expiry_days[t], t == bars - 1, log,
                               events, written)  # fmt: skip
        for k in range(written, min(now, event_bars.shape[0])):
            event_bars[k] = t
        written = now
        t += 1
    return int(tally[0]), int(tally[1]), tally[2], tally[3], int(tally[4]), written


@kernel
def _rank_all(probability, close, ranking, best):
    for t in range(probability.shape[0]):
        best[t] = rank(probability[t], close[t], ranking[t])


@helper
def summarise(returns, trades, wins, profit, loss, exposed, periods_per_year, out, blocks):
    """Fill one result row (`METRICS` order) and its per-block (sum, sum of squares, count) from bar returns."""
    n = returns.shape[0]
    block_count = blocks.shape[0]
    equity = 1.0
    peak = 1.0
    worst = 1.0  # the lowest equity relative to its peak so far
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    s4 = 0.0
    for b in range(block_count):
        first = b * n // block_count
        end = (b + 1) * n // block_count
        block_sum = 0.0
        block_squares = 0.0
        for t in range(first, end):
            r = returns[t]
            if r == 0.0:
                continue  # changes nothing below, bit for bit; most bars of a sweep's configuration hold no trade
            equity *= 1.0 + r
            peak = max(peak, equity)
            worst = min(worst, equity / peak)
            square = r * r
            s1 += r
            s2 += square
            s3 += square * r
            s4 += square * square
            block_sum += r
            block_squares += square
        blocks[b, 0] = block_sum
        blocks[b, 1] = block_squares
        blocks[b, 2] = end - first
    mean = s1 / n if n > 0 else 0.0
    variance = (s2 - n * mean * mean) / (n - 1) if n > 1 else 0.0
    std = math.sqrt(variance) if variance > 0.0 else 0.0
    out[0] = mean / std * math.sqrt(periods_per_year) if std > 0.0 else 0.0
    out[1] = equity - 1.0
    out[2] = 1.0 - worst
    out[3] = trades
    out[4] = wins / trades if trades > 0 else 0.0
    out[5] = profit / loss if loss > 0.0 else (math.inf if profit > 0.0 else 0.0)
    out[6] = exposed / n if n > 0 else 0.0
    out[7] = mean
    out[8] = std
    if std > 0.0:  # standardised central moments from the raw ones
        m2 = s2 / n - mean * mean
        m3 = s3 / n - 3.0 * mean * s2 / n + 2.0 * mean**3
        m4 = s4 / n - 4.0 * mean * s3 / n + 6.0 * mean * mean * s2 / n - 3.0 * mean**4
        out[9] = m3 / m2**1.5 if m2 > 0.0 else 0.0
        out[10] = m4 / (m2 * m2) if m2 > 0.0 else 3.0
    else:
        out[9] = 0.0
        out[10] = 3.0
    out[11] = n


def _run(open_, high, low, close, probability, ranking, confidence, hour, session, end, closes, clock, volatility, configs,
         periods_per_year, results, blocks, chunks):  # fmt: skip
    opened, closed, sessions_per_year, expires, expiry_days, contract_of = clock
    no_log = np.zeros((0, LOG_COLUMNS))
    no_events = np.zeros((0, EVENT_COLUMNS))
    no_bars = np.zeros(0, np.int64)
    count = configs.shape[0]
    for chunk in numba.prange(chunks):
        returns = np.empty(close.shape[0])  # one buffer per chunk of configurations, reused
        for c in range(chunk, count, chunks):  # every chunks-th: a grid's neighbours cost alike, so chunks cost alike
            k = contract_of[c]
            trades, wins, profit, loss, exposed, _ = _simulate(
                open_, high, low, close, probability, ranking, confidence, hour, session, end, closes,
                (opened, closed, sessions_per_year, expires[:, k], expiry_days[:, k]), volatility, configs[c], returns,
                no_log, no_events, no_bars,
            )
            summarise(returns, trades, wins, profit, loss, exposed, periods_per_year, results[c], blocks[c])


load()  # the kernels `_run` calls are dispatchers before numba compiles it here
_run_parallel = numba.njit(parallel=True, cache=True, error_model="numpy")(_run)


def _inputs(market: Market, clock: tuple) -> tuple:
    return (
        market.open, market.high, market.low, market.close, market.probability, market.ranking, market.confidence,
        market.hour, market.session, market.end, market.closes, (market.opened, market.closed, market.sessions_per_year, *clock), market.volatility,
    )


def _contracts(market: Market, configs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each option target's expiries as (bars x targets) columns, and the column of each configuration (NaN ones for stocks)."""
    targets = sorted({int(target) for target in configs[:, _EXPIRY] if target >= 0.0})
    columns = [market.contract(target) for target in targets] or [(np.full(len(market), np.nan),) * 2]
    expires = np.column_stack([column[0] for column in columns])
    days = np.column_stack([column[1] for column in columns])
    column_of = {target: k for k, target in enumerate(targets)}
    which = np.array([column_of.get(int(target), 0) for target in configs[:, _EXPIRY]], dtype=np.int64)
    return expires, days, which


def run(market: Market, configs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backtest every row of ``configs`` (columns `PARAMETERS`); returns (`METRICS` rows, per-block sums)."""
    configs = np.ascontiguousarray(configs, dtype=np.float64)
    results = np.empty((len(configs), len(METRICS)))
    blocks = np.empty((len(configs), BLOCKS, 3))
    if len(configs) and len(market):
        chunks = min(len(configs), 8 * numba.get_num_threads())
        _run_parallel(*_inputs(market, _contracts(market, configs)), configs, market.periods_per_year, results, blocks, chunks)
    return results, blocks


@kernel
def _replay(open_, high, low, close, probability, ranking, confidence, hour, session, end, closes, clock, volatility, config,
            returns, log, events, event_bars):  # fmt: skip
    return _simulate(open_, high, low, close, probability, ranking, confidence, hour, session, end, closes, clock, volatility, config,
                     returns, log, events, event_bars)  # fmt: skip


class Decision(msgspec.Struct, frozen=True):
    """An entry or an exit the policy decided at a bar's close: what the live flow alerts."""

    bar: int
    ticker: str
    intent: str
    """``open`` or ``close``."""
    direction: int
    """Of the order: +1 buys, -1 sells."""
    reason: str
    """``entry`` or the exit's reason."""
    price: float
    """The underlying's: the close an entry is decided at, the level an exit leaves at (a time stop: the close)."""
    size: float
    stop: float
    target: float
    confidence: float
    strike: float = math.nan
    """An option's listed strike, as its alert names it; NaN for the ticker itself."""
    expiry: int = -1
    """An option's expiry as a day number; -1 for the ticker itself or a market without a listed expiry rule."""


def trades(market: Market, config: np.ndarray) -> tuple[list[Trade], np.ndarray]:
    """The trade list and per-bar portfolio returns of one configuration (same kernel as `run`)."""
    listed, returns, _ = replay(market, config)
    return listed, returns


def replay(market: Market, config: np.ndarray) -> tuple[list[Trade], np.ndarray, list[Decision]]:
    """The trades, per-bar returns and every decision (entries and exits, bar by bar) of one configuration."""
    returns = np.empty(len(market))
    capacity = len(market) * int(config[_MAXPOS]) + 16  # at most one entry per slot and bar
    log = np.zeros((capacity, LOG_COLUMNS))
    events = np.zeros((2 * capacity, EVENT_COLUMNS))  # at most an entry and an exit per slot and bar
    event_bars = np.zeros(2 * capacity, np.int64)
    config = np.asarray(config, dtype=np.float64)
    expires, days, _ = _contracts(market, config.reshape(1, -1))
    count, *_, written = _replay(*_inputs(market, (expires[:, 0], days[:, 0])), config, returns, log, events, event_bars)
    written = min(written, len(event_bars))
    listed = [
        Trade(
            ticker=market.tickers[int(row[0])],
            direction=int(row[1]),
            entry_bar=int(row[2]),
            entry_price=float(row[3]),
            exit_bar=int(row[4]),
            exit_price=float(row[5]),
            reason=EXIT_REASONS[int(row[6])],
            net_return=float(row[7]),
            strike=float(row[8]),
            size=float(row[9]),
            expiry=int(row[10]) if row[10] == row[10] else -1,
        )
        for row in log[:count]
    ]
    decisions = []
    for bar, row in zip(event_bars[:written].tolist(), events[:written].tolist(), strict=True):
        i = int(row[1])
        price = row[3]
        if price != price:  # an exit announced on a bar the ticker did not have: at its last close, as the live flow says
            seen = np.flatnonzero(np.isfinite(market.close[: bar + 1, i]))
            price = float(market.close[seen[-1], i])
        decisions.append(Decision(bar=int(bar), ticker=market.tickers[i], intent="open" if row[0] == OPEN else "close",
                                  direction=int(row[2]), reason="entry" if row[0] == OPEN else EXIT_REASONS[int(row[4])],
                                  price=price, size=row[7], stop=row[5], target=row[6], confidence=row[8], strike=row[9],
                                  expiry=int(row[10]) if row[10] == row[10] else -1))  # fmt: skip
    return listed, returns, decisions
