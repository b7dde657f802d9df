"""The vectorised backtester: many execution configurations over one set of probabilities.

A `Market` is a universe of tickers on one time axis (T bars x N tickers, NaN where a
ticker has no bar) with the model's probability for each bar. A configuration is one
row of `PARAMETERS`. ``run`` backtests every configuration with a compiled kernel,
several at once; ``trades`` replays one configuration and lists its trades. Both
apply the engine's policy rules (`engine.policy`), bar by bar:

1. At the open: trades whose time stop is due leave at the open; orders decided at the
   previous close fill by their entry type (or are cancelled).
2. Inside the bar: stop-loss, then take-profit, against the bar's high and low.
3. At the close: open trades are marked to the close.
4. Decision at the close: tickers whose probability passes the threshold (long, short
   or both) in an allowed hour are ranked by confidence ``|p - 0.5|``; the best
   ``ceil(top_pct% x N)`` fill the free slots of ``max_positions``.
5. Whatever is open at the last bar leaves at its close.

Accounting: each trade commits ``position_size`` of equity; its bar-by-bar return,
relative to its entry price, adds into the portfolio's return for that bar, and
commission is charged on entry and on exit. Equity compounds those bar returns.
Sharpe is annualised with the calendar's bars per year.

Options: a configuration with ``expiry_sessions`` >= 0 trades calls and puts on the
tickers instead of the tickers themselves. Its trades are priced with
`engine.options` from the underlying's bar (the high and low at the bar's close time,
the open at its open), the strike and volatility fixed at entry, the time left
from the market's session clock. Prices and slippage are then premiums; stops and
targets stay on the underlying (a 5% stop means the stock moved 5% against the view,
whatever is held), and an option leaves at its value at the level.
"""

from __future__ import annotations

import math

import msgspec
import numba
import numpy as np

from engine._jit import helper, kernel
from engine.options import option_price, option_strike
from engine.policy import (
    ENTRY_TYPES,
    EXIT_END,
    EXIT_EXPIRY,
    EXIT_REASONS,
    EXIT_TIME,
    entry_direction,
    entry_fill,
    exit_levels,
    exit_on_bar,
    fill_price,
    hour_allowed,
)

__all__ = ["Market", "PARAMETERS", "METRICS", "Trade", "run", "trades", "summarise", "BLOCKS"]

PARAMETERS = (
    "threshold", "hours_mask", "side", "top_pct", "position_size", "stop_loss", "take_profit",
    "hold_bars", "max_positions", "entry_type", "slippage", "commission", "strike_score", "expiry_sessions",
)  # fmt: skip
"""Columns of a configuration row (numbers, as the kernel reads them); ``expiry_sessions`` -1 trades the underlying."""
METRICS = (
    "sharpe", "total_return", "max_drawdown", "trades", "win_rate", "profit_factor", "exposure",
    "mean", "std", "skew", "kurtosis", "bars",
)  # fmt: skip
"""Columns of a result row; mean, std, skew and kurtosis are of per-bar returns."""
BLOCKS = 10
"""Equal time blocks whose per-bar return sums are kept (fold dispersion, PBO)."""

_THRESHOLD, _HOURS, _SIDE, _TOP, _SIZE, _STOP, _TAKE, _HOLD, _MAXPOS, _ENTRY, _SLIP, _COMMISSION, _STRIKE, _EXPIRY = range(14)
_LIMIT = ENTRY_TYPES["limit"]


class Market:
    """A universe on one time axis: prices and probabilities as (bars x tickers) arrays.

    Options decay on the session clock: ``opened`` and ``closed`` are the trading
    sessions elapsed at each bar's open and close (`engine.calendar.session_clock`),
    ``sessions_per_year`` the calendar's; ``volatility`` is each ticker's annualised
    volatility known at the bar's close. By default every bar is a whole session and
    no volatility is known, so option configurations cannot trade.
    """

    __slots__ = (
        "tickers", "start", "hour", "open", "high", "low", "close", "probability", "ranking", "confidence",
        "periods_per_year", "opened", "closed", "sessions_per_year", "volatility",
    )  # fmt: skip

    def __init__(
        self, tickers, start, hour, open, high, low, close, probability, periods_per_year: float,  # noqa: A002
        *, opened=None, closed=None, sessions_per_year: float | None = None, volatility=None,
    ) -> None:
        self.tickers = list(tickers)
        self.start = np.asarray(start, dtype=np.int64)
        self.hour = np.ascontiguousarray(hour, dtype=np.int64)
        self.open, self.high, self.low, self.close = (np.ascontiguousarray(a, dtype=np.float64) for a in (open, high, low, close))
        self.probability = np.ascontiguousarray(probability, dtype=np.float64)
        bars = len(self.start)
        self.opened = np.ascontiguousarray(np.arange(bars) if opened is None else opened, dtype=np.float64)
        self.closed = np.ascontiguousarray(self.opened + 1.0 if closed is None else closed, dtype=np.float64)
        self.sessions_per_year = float(periods_per_year if sessions_per_year is None else sessions_per_year)
        self.volatility = np.ascontiguousarray(np.full(self.close.shape, np.nan) if volatility is None else volatility, dtype=np.float64)
        confidence = np.abs(self.probability - 0.5)
        confidence[~np.isfinite(confidence) | ~np.isfinite(self.close)] = -1.0
        # Tickers by falling confidence at each bar (stable: ties keep universe order), computed once per market.
        self.ranking = np.ascontiguousarray(np.argsort(-confidence, axis=1, kind="stable"), dtype=np.int64)
        self.confidence = confidence.max(axis=1)
        self.periods_per_year = float(periods_per_year)

    def __len__(self) -> int:
        return len(self.start)

    def window(self, rows: slice) -> Market:
        """The market restricted to the bars in ``rows``."""
        window = Market.__new__(Market)
        for name in self.__slots__:
            value = getattr(self, name)
            setattr(window, name, value[rows] if isinstance(value, np.ndarray) else value)
        return window


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


@helper
def _simulate(open_, high, low, close, probability, ranking, confidence, hour, clock, volatility, config, returns, log):
    """Backtest one configuration; fills ``returns`` per bar; returns (trades, wins, profit, loss, exposed bars)."""
    opened, closed, sessions_per_year = clock
    bars, tickers = close.shape
    threshold = config[_THRESHOLD]
    mask = np.int64(config[_HOURS])
    side = np.int64(config[_SIDE])
    per_bar = max(1, math.ceil(config[_TOP] / 100.0 * tickers - 1e-9))
    size = config[_SIZE]
    stop_loss = config[_STOP]
    take_profit = config[_TAKE]
    hold = np.int64(config[_HOLD])
    slots = np.int64(config[_MAXPOS])
    entry_type = np.int64(config[_ENTRY])
    slippage = config[_SLIP]
    commission = config[_COMMISSION]
    score = config[_STRIKE]
    expiry_sessions = np.int64(config[_EXPIRY])
    options = expiry_sessions >= 0
    underlying_slippage = 0.0 if options else slippage  # an option's slippage is on its premium
    fee = size * commission
    floor = threshold - 0.5  # no ticker is that confident: nothing can be entered at this bar
    # One slot per open trade: ticker (-1 when free), direction, the sign of its P&L in its price (the direction for
    # the ticker itself, +1 for an option bought), entry bar and price, the underlying's stop and target, time stop,
    # last mark; for an option its kind (+1 call, -1 put, 0 the ticker itself), strike, expiry and volatility.
    ticker = np.full(slots, -1, np.int64)
    direction = np.zeros(slots, np.int64)
    sign = np.zeros(slots, np.int64)
    entry_bar = np.zeros(slots, np.int64)
    entry = np.zeros(slots)
    stop = np.zeros(slots)
    target = np.zeros(slots)
    due = np.zeros(slots, np.int64)
    weight = np.zeros(slots)  # size * sign / entry: the trade's return per unit of price move
    last = np.zeros(slots)
    kind = np.zeros(slots, np.int64)
    strike = np.zeros(slots)
    expiry = np.zeros(slots)  # on the session clock
    sigma = np.zeros(slots)
    holding = np.zeros(tickers, np.bool_)
    order_ticker = np.zeros(slots, np.int64)
    order_direction = np.zeros(slots, np.int64)
    order_reference = np.zeros(slots)
    order_volatility = np.zeros(slots)
    orders = 0
    open_count = 0
    tally = np.zeros(4)  # trades, winners, gross profit, gross loss
    exposed = 0  # a local, not in tally: a counter in memory would chain every bar's store to the next bar's load
    for t in range(bars):
        if open_count == 0 and orders == 0 and confidence[t] < floor:
            returns[t] = 0.0
            continue
        r = 0.0
        # 1. The open: expired options settle at their last mark, time stops leave, then the previous close's orders fill.
        if open_count > 0:
            for s in range(slots):
                i = ticker[s]
                if i < 0:
                    continue
                if kind[s] != 0 and opened[t] >= expiry[s]:
                    r += _leave(s, t, last[s], EXIT_EXPIRY, fee, commission, ticker, direction, sign, entry_bar, entry, weight, last, strike, holding, tally, log)
                    open_count -= 1
                elif t >= due[s] and open_[t, i] == open_[t, i]:
                    price = open_[t, i]
                    if kind[s] != 0:
                        price = option_price(kind[s], price, strike[s], (expiry[s] - opened[t]) / sessions_per_year, sigma[s])
                    price = fill_price(price, -sign[s], slippage)
                    r += _leave(s, t, price, EXIT_TIME, fee, commission, ticker, direction, sign, entry_bar, entry, weight, last, strike, holding, tally, log)
                    open_count -= 1
        for k in range(orders):
            i = order_ticker[k]
            if open_[t, i] != open_[t, i]:
                continue  # no bar for this ticker: the order lapses
            d = order_direction[k]
            price = entry_fill(entry_type, d, order_reference[k], open_[t, i], high[t, i], low[t, i], underlying_slippage)
            if price != price or open_count == slots:
                continue  # unfilled, or its slot's trade could not leave (no bar for that ticker)
            s = 0
            while ticker[s] >= 0:
                s += 1
            stop[s], target[s] = exit_levels(d, price, stop_loss, take_profit)
            if options:
                kind[s] = d
                sign[s] = 1  # long the premium, a call or a put
                expiry[s] = math.floor(opened[t]) + expiry_sessions + 1.0  # the close of its last session
                years = (expiry[s] - opened[t]) / sessions_per_year
                strike[s] = option_strike(d, price, score, years, order_volatility[k])
                sigma[s] = order_volatility[k]
                price = option_price(d, price, strike[s], years, sigma[s])
                if entry_type != _LIMIT:
                    price = fill_price(price, 1, slippage)
            else:
                kind[s] = 0
                sign[s] = d
                strike[s] = math.nan
            ticker[s] = i
            direction[s] = d
            entry_bar[s] = t
            entry[s] = price
            due[s] = t + hold
            weight[s] = size * sign[s] / price
            last[s] = price
            holding[i] = True
            open_count += 1
            r -= fee
        orders = 0
        # 2-3. Inside the bar: stops and targets; then mark to the close (an expiring option settles there).
        if open_count > 0:
            exposed += 1
            for s in range(slots):
                i = ticker[s]
                if i < 0:
                    continue
                if close[t, i] != close[t, i]:
                    if t == bars - 1:  # the ticker has no last bar: leave at its last mark
                        price = fill_price(last[s], -sign[s], slippage)
                        r += _leave(s, t, price, EXIT_END, fee, commission, ticker, direction, sign, entry_bar, entry, weight, last, strike, holding, tally, log)
                        open_count -= 1
                    continue
                reason, level = exit_on_bar(direction[s], stop[s], target[s], open_[t, i], high[t, i], low[t, i], entry_bar[s] < t)
                c = kind[s]
                if c == 0:
                    mark = close[t, i]
                    expired = False
                else:  # an option's level is reached at the open (a gap) or, pessimistically, at the close's time to expiry
                    years = (expiry[s] - closed[t]) / sessions_per_year
                    if reason != 0:
                        at = (expiry[s] - opened[t]) / sessions_per_year if level == open_[t, i] else years
                        level = option_price(c, level, strike[s], at, sigma[s])
                    mark = option_price(c, close[t, i], strike[s], years, sigma[s])
                    expired = years <= 0.0
                if reason != 0:
                    price = fill_price(level, -sign[s], slippage)
                elif expired:
                    reason, price = EXIT_EXPIRY, mark  # settles at its intrinsic value, no spread to cross
                elif t == bars - 1:
                    reason, price = EXIT_END, fill_price(mark, -sign[s], slippage)
                if reason != 0:
                    r += _leave(s, t, price, reason, fee, commission, ticker, direction, sign, entry_bar, entry, weight, last, strike, holding, tally, log)
                    open_count -= 1
                else:
                    r += weight[s] * (mark - last[s])
                    last[s] = mark
        returns[t] = r
        # 4. The decision at the close, for the next bar's open.
        if t == bars - 1 or confidence[t] < floor or not hour_allowed(hour[t], mask):
            continue
        free = slots - open_count
        for s in range(slots):
            if ticker[s] >= 0 and t + 1 >= due[s]:
                free += 1  # leaves at the next open, before the new orders fill
        if free == 0:
            continue
        for rank in range(tickers):
            if orders >= per_bar or orders >= free:
                break
            i = ranking[t, rank]
            p = probability[t, i]
            if p != p or close[t, i] != close[t, i]:
                break  # ranking puts missing values last
            if holding[i] and not _leaving(ticker, due, i, t + 1):
                continue
            if options and not volatility[t, i] > 0.0:
                continue  # an option cannot be priced without a volatility
            signal = entry_direction(p, threshold, side)
            if signal != 0:
                order_ticker[orders] = i
                order_direction[orders] = signal
                order_reference[orders] = close[t, i]
                order_volatility[orders] = volatility[t, i]
                orders += 1
    return int(tally[0]), int(tally[1]), tally[2], tally[3], exposed


@helper
def _leaving(ticker, due, i, t):
    """True when ticker ``i``'s trade reaches its time stop by bar ``t``."""
    for s in range(ticker.shape[0]):
        if ticker[s] == i and t >= due[s]:
            return True
    return False


@helper
def _leave(s, t, price, reason, fee, commission, ticker, direction, sign, entry_bar, entry, weight, last, strike, holding, tally, log):
    """Close slot ``s`` at ``price`` on bar ``t``: book and log the trade; returns its share of the bar's return."""
    i = ticker[s]
    share = weight[s] * (price - last[s]) - fee
    net = sign[s] * (price - entry[s]) / entry[s] - 2.0 * commission
    row = int(tally[0])
    if row < log.shape[0]:
        log[row, 0] = i
        log[row, 1] = direction[s]
        log[row, 2] = entry_bar[s]
        log[row, 3] = entry[s]
        log[row, 4] = t
        log[row, 5] = price
        log[row, 6] = reason
        log[row, 7] = net
        log[row, 8] = strike[s]
    tally[0] += 1.0
    if net > 0.0:
        tally[1] += 1.0
        tally[2] += net
    else:
        tally[3] -= net
    ticker[s] = -1
    holding[i] = False
    return share


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


def _run(open_, high, low, close, probability, ranking, confidence, hour, clock, volatility, configs, periods_per_year, results, blocks, chunks):
    no_log = np.zeros((0, _LOG_COLUMNS))
    count = configs.shape[0]
    for chunk in numba.prange(chunks):
        returns = np.empty(close.shape[0])  # one buffer per chunk of configurations, reused
        for c in range(chunk * count // chunks, (chunk + 1) * count // chunks):
            trades, wins, profit, loss, exposed = _simulate(
                open_, high, low, close, probability, ranking, confidence, hour, clock, volatility, configs[c], returns, no_log
            )
            summarise(returns, trades, wins, profit, loss, exposed, periods_per_year, results[c], blocks[c])


_run_parallel = numba.njit(parallel=True, cache=True, error_model="numpy")(_run)
_LOG_COLUMNS = 9


def _inputs(market: Market) -> tuple:
    return (
        market.open, market.high, market.low, market.close, market.probability, market.ranking, market.confidence,
        market.hour, (market.opened, market.closed, market.sessions_per_year), market.volatility,
    )


def run(market: Market, configs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backtest every row of ``configs`` (columns `PARAMETERS`); returns (`METRICS` rows, per-block sums)."""
    configs = np.ascontiguousarray(configs, dtype=np.float64)
    results = np.empty((len(configs), len(METRICS)))
    blocks = np.empty((len(configs), BLOCKS, 3))
    if len(configs) and len(market):
        chunks = min(len(configs), 8 * numba.get_num_threads())
        _run_parallel(*_inputs(market), configs, market.periods_per_year, results, blocks, chunks)
    return results, blocks


@kernel
def _replay(open_, high, low, close, probability, ranking, confidence, hour, clock, volatility, config, returns, log):
    return _simulate(open_, high, low, close, probability, ranking, confidence, hour, clock, volatility, config, returns, log)


def trades(market: Market, config: np.ndarray) -> tuple[list[Trade], np.ndarray]:
    """The trade list and per-bar portfolio returns of one configuration (same kernel as `run`)."""
    returns = np.empty(len(market))
    capacity = len(market) * int(config[_MAXPOS]) + 16  # at most one entry per slot and bar
    log = np.zeros((capacity, _LOG_COLUMNS))
    count, *_ = _replay(*_inputs(market), np.asarray(config, dtype=np.float64), returns, log)
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
        )
        for row in log[:count]
    ]
    return listed, returns
