"""A paper run's report as one self-contained HTML file: curves, trades, slippage, the trust gate, the parity diff.

Charts are inline SVG and the page loads nothing from anywhere, so the file opens
the same on a laptop, in a mail, or on a machine without network.
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from pathlib import Path

from replay.broker import Account
from replay.parity import Parity
from replay.sim import SimRun

__all__ = ["render", "write"]

_WIDTH, _HEIGHT, _PAD = 860, 220, 64
_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 920px; color: #1d2430; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; border-bottom: 1px solid #d8dde6; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: 2px 8px; border-bottom: 1px solid #eef0f4; white-space: nowrap; } th:first-child, td:first-child { text-align: left; }
.PASS { color: #1a7f37; } .MARGINAL { color: #9a6700; } .FAIL { color: #cf222e; font-weight: 600; }
.legend span { margin-right: 1.5em; } .paper { color: #0969da; } .backtest { color: #8250df; }
svg { background: #fafbfc; border: 1px solid #eef0f4; }
table + table { margin-top: 1.5em; } .wide { overflow-x: auto; }
"""


def _day(ns: int) -> str:
    return f"{datetime.fromtimestamp(ns / 1e9, UTC):%Y-%m-%d %H:%M}"


def _lines(series: dict[str, list[float]], label: str, form: str = "{:.4f}") -> str:
    """An SVG line chart of equal-length series (NaN breaks a line); ``form`` formats the axis labels."""
    values = [v for points in series.values() for v in points if v == v]
    if not values:
        return "<p>nothing to draw</p>"
    low, high = min(values), max(values)
    high = high if high > low else low + 1e-9
    n = max(len(points) for points in series.values())
    out = [f'<svg role="img" aria-label="{html.escape(label)}" width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}">']
    for y_value in (low, (low + high) / 2, high):
        y = _HEIGHT - _PAD - (y_value - low) / (high - low) * (_HEIGHT - 2 * _PAD)
        out.append(f'<text x="{_PAD - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{form.format(y_value)}</text>')
        out.append(f'<line x1="{_PAD}" x2="{_WIDTH - 4}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e8ee"/>')
    for name, points in series.items():
        colour = "#0969da" if name == "paper" else "#8250df"
        path, pen = [], "M"
        for i, value in enumerate(points):
            if value != value:
                pen = "M"
                continue
            x = _PAD + i / max(n - 1, 1) * (_WIDTH - _PAD - 4)
            y = _HEIGHT - _PAD - (value - low) / (high - low) * (_HEIGHT - 2 * _PAD)
            path.append(f"{pen}{x:.1f},{y:.1f}")
            pen = "L"
        out.append(f'<path class="{name}" d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
    out.append("</svg>")
    return "".join(out)


def _drawdown(curve: list[float]) -> list[float]:
    peak, out = -math.inf, []
    for value in curve:
        if value != value:
            out.append(math.nan)
            continue
        peak = max(peak, value)
        out.append(value / peak - 1.0)
    return out


def _histogram(values: list[float], label: str, bins: int = 20) -> str:
    if not values:
        return "<p>No matched fills.</p>"
    low, high = min(values), max(values)
    if high - low < 1e-9:
        return f"<p>Every one of the {len(values):,} matched fills is at {low:.2f} bps from the backtest's.</p>"
    width = (high - low) / bins
    counts = [0] * bins
    for value in values:
        counts[min(int((value - low) / width), bins - 1)] += 1
    top = max(counts)
    bar = (_WIDTH - 2 * _PAD) / bins
    out = [f'<svg role="img" aria-label="{html.escape(label)}" width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}">']
    for i, count in enumerate(counts):
        h = count / top * (_HEIGHT - 2 * _PAD)
        out.append(f'<rect x="{_PAD + i * bar:.1f}" y="{_HEIGHT - _PAD - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" fill="#0969da">'
                   f"<title>{low + i * width:.2f} to {low + (i + 1) * width:.2f} bps: {count}</title></rect>")  # fmt: skip
    out.append(f'<text x="{_PAD}" y="{_HEIGHT - 8}" font-size="11">{low:.2f} bps</text>')
    out.append(f'<text x="{_WIDTH - _PAD - 60}" y="{_HEIGHT - 8}" font-size="11">{high:.2f} bps</text></svg>')
    return "".join(out)


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(run: SimRun, account: Account, parity: Parity) -> str:
    """The report's HTML."""
    s = run.summary
    paper = [p for _, p, _ in parity.curve]
    backtest = [b for _, _, b in parity.curve]
    verdict = run.verdict or {}
    gates = [[g["gate"], g["status"], g["reason"]] for g in verdict.get("gates", [])]
    gate_rows = "".join(f'<tr><td>{html.escape(g)}</td><td class="{st}">{st}</td><td>{html.escape(reason)}</td></tr>'
                        for g, st, reason in gates)  # fmt: skip
    fills = {fill.alert_id: fill for fill in account.fills}
    trades = [[t.instrument, "long" if t.direction > 0 else "short", _day(t.entry_at), f"{t.entry_price:.4f}", _day(t.exit_at),
               f"{t.exit_price:.4f}", t.reason, f"{t.quantity:g}", f"{t.fees:.2f}", f"{t.pnl:,.2f}", f"{t.net_return:+.3%}",
               f"{(fills[t.entry_alert].price / fills[t.entry_alert].reference - 1) * 1e4:+.1f}" if t.entry_alert in fills else ""]
              for t in account.trades]  # fmt: skip
    differences = [[d.what, d.key, d.field, d.backtest, d.replay, d.cause] for d in parity.differences[:200]]
    gap = [[cause, f"{value:+.4%}"] for cause, value in sorted(parity.return_gap.items(), key=lambda item: -abs(item[1]))]
    title = f"Paper run {run.run_id}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(", ".join(run.request.models))} over {html.escape(", ".join(run.tickers))} ({html.escape(run.cadence)}),
fills by the <b>{html.escape(run.request.fill.convention)}</b> convention; status {html.escape(run.status)}.</p>
{_table(["figure", "paper", "backtest"], [
    ["total return", f"{parity.paper['total_return']:+.2%}", f"{parity.backtest['total_return']:+.2%}"],
    ["Sharpe", f"{parity.paper['sharpe']:.2f}", f"{parity.backtest['sharpe']:.2f}"],
    ["max drawdown", f"{parity.paper['max_drawdown']:.2%}", f"{parity.backtest['max_drawdown']:.2%}"],
    ["trades", f"{s.get('trades', 0):.0f}", f"{parity.trades}"],
    ["fees", f"{s.get('fees', 0):,.2f}", ""],
])}
<h2 id="gate">Trust gate: <span class="{html.escape(str(verdict.get("status", "")))}">{html.escape(str(verdict.get("status", "not judged")))}</span></h2>
<table><thead><tr><th>gate</th><th>status</th><th>reason</th></tr></thead><tbody>{gate_rows}</tbody></table>
<h2 id="equity">Equity: paper and backtest</h2>
<p class="legend"><span class="paper">&#9644; paper</span><span class="backtest">&#9644; backtest</span></p>
{_lines({"paper": paper, "backtest": backtest}, "equity curves")}
<h2 id="drawdown">Drawdown</h2>
{_lines({"paper": _drawdown(paper), "backtest": _drawdown(backtest)}, "drawdowns", "{:.2%}")}
<h2 id="slippage">Slippage against the backtest's fills (bps, worse positive)</h2>
{_histogram(parity.slippage_bps, "slippage distribution")}
<h2 id="parity">Parity with the backtest</h2>
<p>Features: {parity.features} rows compared. Probabilities: {parity.scores} bar closes compared. Decisions: {parity.decisions} compared, {parity.agreement:.1%} alike.
Trades: {parity.trades} compared.
Differences: {len(parity.differences)}{" (the first 200 below)" if len(parity.differences) > 200 else ""}.</p>
{"<h3>The return gap by cause</h3>" + _table(["cause", "share of the return gap"], gap) if gap else ""}
{"<h3>Each difference</h3><div class=wide>" + _table(["what", "key", "field", "backtest", "replay", "cause"], differences) + "</div>"
 if differences else "<p>No difference.</p>"}
<h2 id="trades">Trades</h2>
<div class=wide>{_table(["instrument", "side", "entry", "price", "exit", "price", "reason", "quantity", "fees", "P&L", "net return",
         "entry vs alert (bps)"], trades)}</div>
</body></html>
"""


def write(home: Path, run: SimRun, account: Account, parity: Parity) -> Path:
    """Write the report into the run's folder; returns its path."""
    path = Path(home) / "sim" / run.run_id / "report.html"
    path.write_text(render(run, account, parity), encoding="utf-8")
    return path
