"""The parity report: a paper run held against the research backtest of the same artifact over the same bars.

The backtest (`research.backtest.replay`) scores the stored bars with the model's
`Pipeline` and runs its policy over the run's window, warmed from the history before
it, as the replay's flow was. The comparisons:

- **Features**: every feature row the flow scored (its ``features.jsonl``) equals,
  column by column, the row the backtest's replay of the stored bars built for the
  same bar, and every bar the backtest has a row for has one from the flow; a
  difference names the feature.
- **Probabilities**: every bar close the flow scored (its ``scores.jsonl``) has the
  probability the backtest scored the same bar with, and every bar the backtest
  scored was scored by the flow.
- **Decisions**: every entry and exit the backtest decides is an alert of the run
  (the same id: model, ticker, bar end, intent) with the same reason, price, size and
  confidence, and the run alerts nothing else. The last bar is left out: a backtest
  closes everything there, the flow decides as on any other bar.
- **Trades**: each backtest round trip is a broker trade entered on the same bar of
  the same ticker, at the same entry and exit prices, for the same reason and net
  return. Under the ``backtest`` fill convention both lists are empty; under
  ``market``, each difference names its cause (entry fill, exit fill, fees, an order
  not filled and why), and the report sums how much of the return gap (trade size
  times the net return difference) each cause explains.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np

from engine.alerts import alert_id, nanoseconds
from engine.calendar import EPOCH, calendar
from engine.policy import EXIT_END, EXIT_REASONS, Policy
from engine.schemas import OptionAlert
from engine.store import load_bars
from engine.workspace import Workspace
from packs import catalog
from replay.broker import Account
from replay.sim import SimRun, account, alerts, load
from research import review, sweep
from research.backtest import BLOCKS, METRICS, Decision, Market, Trade, replay, summarise

__all__ = ["Difference", "Parity", "backtest", "report", "figures"]

_TOLERANCE = 1e-9  # relative: the two sides compute the same floats in another order at most


class Difference(msgspec.Struct, frozen=True, kw_only=True):
    """One thing the replay and the backtest disagree on."""

    what: str
    """``decision`` or ``trade``."""
    key: str
    """The alert id (a decision) or ``model ticker entered <entry bar's start>`` (a trade)."""
    field: str
    backtest: str
    replay: str
    cause: str


class Parity(msgspec.Struct, frozen=True, kw_only=True):
    """A run's parity report."""

    run_id: str
    convention: str
    features: int
    """Feature rows compared."""
    scores: int
    """Bar closes whose probability was compared."""
    decisions: int
    """Decisions of the backtest compared."""
    trades: int
    differences: list[Difference]
    return_gap: dict[str, float]
    """Per cause, the share of the return gap it explains (trade size x net return difference, summed)."""
    backtest: dict[str, float]
    """The backtest's figures over the window (`research.backtest.METRICS`), its models' bar returns summed."""
    paper: dict[str, float]
    """The paper account's, from its equity at each bar end, by the same arithmetic."""
    slippage_bps: list[float]
    """Each matched fill against the backtest's fill of the same trade, in basis points, worse positive."""
    curve: list[tuple[int, float, float]]
    """(bar end, paper equity, backtest equity) at each bar end of the window, both starting at 1."""

    @property
    def empty(self) -> bool:
        return not self.differences

    @property
    def agreement(self) -> float:
        """The share of the backtest's decisions the replay alerted alike."""
        differing = {d.key for d in self.differences if d.what == "decision"}
        return 1.0 - len(differing) / self.decisions if self.decisions else 1.0


def backtest(home: Path, trained_id: str, first_end: int, last_end: int) -> tuple[Market, list[Trade], list[Decision], np.ndarray, dict]:
    """The backtest of a trained model over its universe's bars ending from ``first_end`` to ``last_end`` (ns, inclusive).

    Returns the market window, its round trips, its decisions, its portfolio return at
    each bar, and the feature rows of the window's bars: (ticker, bar end) -> row.
    """
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        scorer = review.load_scorer(space, trained_id)
        spec = space.model(space.trained(trained_id).model)
        request = space.sweep_request(scorer.manifest.sweep)
    pack = catalog(home).get(f"{spec.pack}@{spec.pack_version}")
    universe, rows = [], {}
    for ticker in request.universe or [spec.instrument.symbol]:
        bars, dataset = load_bars(home, ticker, spec.cadence)
        cal = calendar(dataset.calendar)
        points = sweep.evaluation_bars(home, spec.name, spec.cadence, spec.evaluation, ticker)
        replayed = review.replay_history(home, scorer, bars, cal, points)
        _, decided, _ = sweep.model_rows(bars, points, cal)  # the rows it decides on: its bars, or its evaluation intervals
        universe.append((bars, points, decided, replayed.probability))
        inside = np.flatnonzero((decided.end >= first_end) & (decided.end <= last_end))
        rows |= {(ticker, int(decided.end[t])): replayed.features[t] for t in inside.tolist()}
    axis = np.unique(np.concatenate([decided.start for _, _, decided, _ in universe]))
    stored = np.full((len(axis), len(universe)), np.nan)
    for j, (_, _, decided, probabilities) in enumerate(universe):
        stored[np.searchsorted(axis, decided.start), j] = probabilities
    prepared = sweep.build_market([(bars, None, points) for bars, points, _, _ in universe], cal, spec,
                                  pack.strategies[spec.strategy].label, request, stored=stored)  # fmt: skip
    end = prepared.market.end
    market = prepared.market.window(slice(int(np.searchsorted(end, first_end)), int(np.searchsorted(end, last_end, side="right"))))
    policy = Policy.from_parameters(scorer.manifest.policy["parameters"])
    listed, returns, decisions = replay(market, policy.row())
    return market, listed, decisions, returns, rows


def report(home: Path, run_id: str) -> Parity:
    """The parity report of a finished paper run."""
    run = load(home, run_id)
    book = account(home, run_id)
    taken = {alert.alert_id: alert for alert in alerts(Path(home) / "sim" / run_id)}
    window_bars = _window_ends(home, run)
    differences: list[Difference] = []
    gap: dict[str, float] = {}
    slippage: list[float] = []
    by_end: dict[int, float] = {}
    decisions = trades = scores = compared_rows = 0
    periods = math.nan
    scored = _scores(Path(home) / "sim" / run_id / "scores.jsonl")
    built = _feature_rows(Path(home) / "sim" / run_id / "features.jsonl")
    for model in run.request.models:
        market, listed, decided, returns, rows = backtest(home, model, window_bars[0], window_bars[-1])
        compared_rows += _features(model, _names(home, model), rows, built, differences)
        periods = market.periods_per_year
        for end, value in zip(market.end.tolist(), returns.tolist(), strict=True):
            by_end[end] = by_end.get(end, 0.0) + value
        scores += _probabilities(model, market, scored, differences)
        last = len(market) - 1
        expected = {}
        for d in decided:
            if d.bar < last:
                expected[alert_id(model, d.ticker, int(market.end[d.bar]), d.intent)] = d
        decisions += len(expected)
        final = int(market.end[last])
        got = {key: alert for key, alert in taken.items() if alert.model_id == model and nanoseconds(alert.timestamp) < final}
        for key in sorted(set(expected) - set(got)):
            differences.append(Difference(what="decision", key=key, field="alert", backtest="decided", replay="no alert", cause="unexplained"))
        for key in sorted(set(got) - set(expected)):
            differences.append(Difference(what="decision", key=key, field="alert", backtest="no decision", replay="alerted", cause="unexplained"))
        for key in sorted(set(expected) & set(got)):
            d, alert = expected[key], got[key]
            fields = [("reason", d.reason, alert.reason), ("price", d.price, alert.entry_price), ("size", d.size, alert.position_size),
                      ("confidence", d.confidence, alert.confidence)]  # fmt: skip
            if isinstance(alert, OptionAlert):  # the contract: the one the backtest priced
                fields += [("strike", d.strike, alert.strike), ("expiration", str(EPOCH + timedelta(days=d.expiry)), str(alert.expiration))]
            for field, want, have in fields:
                if not _same(want, have):
                    differences.append(Difference(what="decision", key=key, field=field, backtest=_shown(want), replay=_shown(have),
                                                  cause="unexplained"))  # fmt: skip
        trades += _trades(run, model, market, listed, book, differences, gap, slippage)
    equity = np.array([run.request.fill.cash] + [value for _, value, _ in book.equity])
    ends = sorted(by_end)
    backtest_equity = np.cumprod(1.0 + np.array([by_end[end] for end in ends]))
    paper_at = {at: value / run.request.fill.cash for at, value, _ in book.equity}
    curve = [(end, paper_at.get(end, math.nan), float(value)) for end, value in zip(ends, backtest_equity.tolist(), strict=True)]
    return Parity(run_id=run_id, convention=run.request.fill.convention, features=compared_rows, scores=scores, decisions=decisions, trades=trades, differences=differences,
                  return_gap=gap, backtest=figures(np.array([by_end[end] for end in sorted(by_end)]), periods),
                  paper=figures(equity[1:] / equity[:-1] - 1.0, periods), slippage_bps=slippage, curve=curve)  # fmt: skip


def figures(returns: np.ndarray, periods_per_year: float) -> dict[str, float]:
    """Sharpe, total return and maximum drawdown of per-bar returns, by the backtest's own arithmetic (`summarise`)."""
    out, blocks = np.empty(len(METRICS)), np.empty((BLOCKS, 3))
    summarise(np.ascontiguousarray(returns, dtype=np.float64), 0, 0, 0.0, 0.0, 0, periods_per_year, out, blocks)
    figures = dict(zip(METRICS, out.tolist(), strict=True))
    return {name: figures[name] for name in ("sharpe", "total_return", "max_drawdown", "bars")}


def _lines(path: Path) -> list[list]:
    """The JSON lines the flow wrote to ``path`` (none if it wrote none); a resumed flow may have written some twice."""
    found = []
    if path.exists():
        for line in path.read_bytes().splitlines():
            try:
                found.append(msgspec.json.decode(line))
            except (msgspec.DecodeError, ValueError):
                continue  # a line a kill cut short: written again whole after the resume
    return found


def _scores(path: Path) -> dict[tuple[str, str, int], float]:
    """(model, ticker, bar end) -> probability of the flow's scored bar closes."""
    return {(model, bar["ticker"], bar["end"]): math.nan if probability is None else probability
            for model, bar, probability, *_ in _lines(path)}  # fmt: skip


def _feature_rows(path: Path) -> dict[tuple[str, str, int], list[float]]:
    """(model, ticker, bar end) -> the feature row the flow scored."""
    return {(model, ticker, end): values for model, ticker, end, values in _lines(path)}


def _names(home: Path, trained_id: str) -> list[str]:
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        return list(review.load_scorer(space, trained_id).manifest.features)


def _features(model: str, names: list[str], rows: dict, built: dict, differences: list) -> int:
    """Compare the backtest's feature row of each bar of the window with the flow's; returns how many rows were compared."""
    compared = 0
    for (ticker, end), want in sorted(rows.items()):
        have = built.get((model, ticker, end))
        if have is None and np.isnan(want).any():
            continue  # warming up: neither side scores the bar
        compared += 1
        key = f"{model} {ticker} {_moment(end)}"
        if have is None:
            differences.append(Difference(what="features", key=key, field="row", backtest="built", replay="no row", cause="unexplained"))
            continue
        for name, mine, theirs in zip(names, want.tolist(), have, strict=True):
            if not (mine == theirs or mine != mine and theirs != theirs):  # float32 values, bit for bit
                differences.append(Difference(what="features", key=key, field=name, backtest=_shown(mine), replay=_shown(theirs),
                                              cause="unexplained"))  # fmt: skip
    return compared


def _probabilities(model: str, market: Market, scored: dict, differences: list) -> int:
    """Compare the backtest's probability of each bar of the window with the flow's; returns how many bars were compared."""
    compared = 0
    for j, ticker in enumerate(market.tickers):
        for t in np.flatnonzero(np.isfinite(market.close[:, j])).tolist():
            end, want = int(market.end[t]), float(market.probability[t, j])
            have = scored.get((model, ticker, end))
            if have is None and want != want:
                continue  # warming up on both sides, and the flow did not even emit it
            compared += 1
            if have is None or not _same(want, have):
                differences.append(Difference(what="probability", key=f"{model} {ticker} {_moment(end)}", field="probability",
                                              backtest=_shown(want), replay="not scored" if have is None else _shown(have),
                                              cause="unexplained"))  # fmt: skip
    return compared


def _window_ends(home: Path, run: SimRun) -> list[int]:
    from replay.feed import window

    bars = window(home, run.tickers, run.cadence, run.request.start, run.request.end, with_ticks=False).bars
    return [bars[0].end, bars[-1].end]


def _trades(run: SimRun, model: str, market: Market, listed: list[Trade], book: Account, differences: list, gap: dict,
            slippage: list) -> int:  # fmt: skip
    """Compare one model's backtest round trips (but those the history's end closed) with the broker's; returns how many."""
    market_convention = run.request.fill.convention == "market"
    papered = {(t.ticker, t.entry_at): t for t in book.trades if t.model == model}
    notes = {note.split(": ", 1)[0]: note.split(": ", 1)[1] for note in book.notes}
    compared = 0
    for trade in listed:
        if trade.reason == EXIT_REASONS[EXIT_END]:
            continue  # closed by the backtest's last bar; the paper position stays open
        compared += 1
        entry_start = int(market.start[trade.entry_bar])
        key = f"{model} {trade.ticker} entered {_moment(entry_start)}"
        paper = papered.pop((trade.ticker, entry_start), None)
        decided = int(market.end[trade.entry_bar - 1]) if trade.entry_bar > 0 else entry_start
        entry_alert = alert_id(model, trade.ticker, decided, "open")
        if paper is None:
            cause = f"not filled: {notes[entry_alert]}" if entry_alert in notes else "unexplained"
            differences.append(Difference(what="trade", key=key, field="trade", backtest=f"{trade.reason} {trade.net_return:+.4%}",
                                          replay="no trade", cause=cause))  # fmt: skip
            _add(gap, cause, -trade.size * trade.net_return)
            continue
        backtest_gross = _gross(trade.direction if math.isnan(trade.strike) else 1, trade.entry_price, trade.exit_price)
        paper_sign = paper.direction if paper.instrument == paper.ticker else 1
        paper_gross = _gross(paper_sign, paper.entry_price, paper.exit_price)
        for field, want, have, cause in (
            ("entry_price", trade.entry_price, paper.entry_price, "entry fill: next quote or open, slippage_bps" if market_convention else "unexplained"),
            ("exit_price", trade.exit_price, paper.exit_price, "exit fill: next quote or open, slippage_bps" if market_convention else "unexplained"),
            ("reason", trade.reason, paper.reason, "unexplained"),
            ("net_return", trade.net_return, paper.net_return, "fees: the per-instrument schedule" if market_convention else "unexplained"),
        ):  # fmt: skip
            if not _same(want, have):
                differences.append(Difference(what="trade", key=key, field=field, backtest=_shown(want), replay=_shown(have), cause=cause))
        side = trade.direction if math.isnan(trade.strike) else 1  # of the entry: a buy, but for a short in the ticker itself
        slippage.append(side * (paper.entry_price - trade.entry_price) / trade.entry_price * 1e4)
        if trade.exit_price > 0.0:  # an option that expired worthless settles at zero: no spread was crossed
            slippage.append(-side * (paper.exit_price - trade.exit_price) / trade.exit_price * 1e4)
        _add(gap, "fill prices", trade.size * (paper_gross - backtest_gross))
        _add(gap, "fees", trade.size * ((paper.net_return - paper_gross) - (trade.net_return - backtest_gross)))
    for (ticker, entry_at), paper in sorted(papered.items()):
        if entry_at >= int(market.start[0]):
            differences.append(Difference(what="trade", key=f"{model} {ticker} entered {_moment(entry_at)}", field="trade", backtest="no trade",
                                          replay=f"{paper.reason} {paper.net_return:+.4%}", cause="unexplained"))  # fmt: skip
    return compared


def _moment(ns: int) -> str:
    return f"{datetime.fromtimestamp(ns / 1e9, UTC):%Y-%m-%d %H:%M}"


def _gross(sign: int, entry: float, exit_price: float) -> float:
    return sign * (exit_price - entry) / entry


def _add(gap: dict, cause: str, value: float) -> None:
    if abs(value) > 1e-12:  # the same trade priced in another order of operations
        gap[cause] = gap.get(cause, 0.0) + value


def _same(want: float | str | None, have: float | str | None) -> bool:
    if isinstance(want, str) or isinstance(have, str) or want is None or have is None:
        return want == have
    if want != want and have != have:
        return True
    return abs(want - have) <= _TOLERANCE * max(1.0, abs(want), abs(have))


def _shown(value: object) -> str:
    return f"{value:.10g}" if isinstance(value, float) else str(value)
