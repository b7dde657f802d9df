"""A trained model's track record: its trades in paper runs, and its live alerts' round trips.

- **Paper**: every finished paper run that replayed the model, with the model's own
  trades out of the run's account (the models of one run share one account) and the
  trust gate's verdict on the run. Its account return is the model's P&L, after
  fees, on the account's starting cash.
- **Live**: the durable alert history the server's archive keeps of the Redis
  streams. Each opening alert is paired with the next close alert of the same model
  and ticker, at the alerts' own prices (the close each was decided at; an option's
  premium): what the signals earned before fees and slippage, not fills, which only
  a broker gives. Its account return weighs each round trip by the share of equity
  its opening alert committed (``position_size``), compounded. An opening alert not
  closed yet is an open position.

Both read the per-trade figures of a list of returns through one rule (`figures`),
so a paper record and a live one read alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import msgspec

from engine.schemas import Alert, OptionAlert
from replay import sim

__all__ = ["Figures", "figures", "paper", "live"]


class Figures(msgspec.Struct, frozen=True, kw_only=True):
    """What a list of round trips earned, each on the capital it committed: how many, how often they won, and how much."""

    trades: int
    win_rate: float
    average_return: float
    best: float
    worst: float


def figures(returns: list[float]) -> Figures:
    """The figures of round trips that returned ``returns`` (fractions of what each committed); NaN where there is no trade."""
    if not returns:
        return Figures(trades=0, win_rate=math.nan, average_return=math.nan, best=math.nan, worst=math.nan)
    return Figures(trades=len(returns), win_rate=sum(r > 0 for r in returns) / len(returns), average_return=math.fsum(returns) / len(returns),
                   best=max(returns), worst=min(returns))  # fmt: skip


def paper(home: Path, trained_id: str) -> list[dict]:
    """Per finished paper run of ``trained_id``, oldest first: the run, its window, the model's figures and the verdict."""
    record = []
    for run in sim.runs(home):
        if trained_id not in run.request.models or run.status != "done":
            continue
        account = sim.account(home, run.run_id)
        trades = [trade for trade in account.trades if trade.model == trained_id]
        pnl = math.fsum(trade.pnl for trade in trades)
        record.append({"run": run.run_id, "start": run.request.start, "end": run.request.end, "tickers": run.tickers,
                       "figures": figures([trade.net_return for trade in trades]), "pnl": pnl, "account_return": pnl / account.settings.cash,
                       "verdict": (run.verdict or {}).get("status")})  # fmt: skip
    return record


def live(alerts: Iterable[Alert]) -> dict:
    """The round trips of one model's ``alerts`` (in any order): how many alerts, the last one's time, the figures, and the
    tickers whose position is still open."""
    ordered = sorted(alerts, key=lambda a: (a.timestamp, a.intent == "open"))  # at one bar, a close before a reopening
    opened: dict[str, Alert] = {}
    returns: list[float] = []
    account = 1.0  # None once a round trip's opening alert does not say what it committed
    for alert in ordered:
        if alert.intent == "open":
            opened.setdefault(alert.ticker, alert)
        elif alert.ticker in opened:
            entry = opened.pop(alert.ticker)
            bought, sold = _price(entry), _price(alert)
            if bought > 0:
                returns.append((sold / bought - 1.0) * (1.0 if entry.action == "BUY" else -1.0))
                account = None if account is None or entry.position_size is None else account * (1.0 + entry.position_size * returns[-1])
    return {"alerts": len(ordered), "last_alert_at": ordered[-1].timestamp if ordered else None, "figures": figures(returns),
            "account_return": None if account is None else account - 1.0, "open": sorted(opened)}  # fmt: skip


def _price(alert: Alert) -> float:
    return alert.premium if isinstance(alert, OptionAlert) and alert.premium else alert.entry_price
