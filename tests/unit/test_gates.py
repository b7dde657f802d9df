import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.gates import Gates, evaluate, overall

GATES = Gates(min_trades=50, min_sharpe=1.0, max_drawdown=0.10, min_win_rate=0.50)


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({"trades": 80, "sharpe": 1.4, "max_drawdown": 0.06, "win_rate": 0.55}, ["PASS"] * 4),
        ({"trades": 46, "sharpe": 0.92, "max_drawdown": 0.108, "win_rate": 0.46}, ["MARGINAL"] * 4),
        ({"trades": 30, "sharpe": 0.5, "max_drawdown": 0.25, "win_rate": 0.30}, ["FAIL"] * 4),
    ],
)
def test_each_gate_yields_pass_marginal_or_fail(metrics, expected):
    assert [r.status for r in evaluate(GATES, metrics)] == expected


def test_reasons_are_readable():
    results = evaluate(GATES, {"trades": 46, "sharpe": 0.5, "max_drawdown": 0.25, "win_rate": 0.6})
    assert [r.reason for r in results] == [
        "trades 46 is below the gate 50 (within the marginal band)",
        "Sharpe 0.50 is below the gate 1.00",
        "max drawdown 25.0% is above the gate 10.0%",
        "win rate 60.0% meets the gate 50.0%",
    ]
    assert overall(results) == "FAIL"


def test_zero_threshold_still_has_a_marginal_band():
    gates = Gates(min_trades=20, min_sharpe=0.0, max_drawdown=0.4)
    status = {r.gate: r.status for r in evaluate(gates, {"trades": 20, "sharpe": -0.03, "max_drawdown": 0.1})}
    assert status["min_sharpe"] == "MARGINAL"


def test_unset_gate_is_not_judged_and_missing_metric_is_named():
    gates = Gates(min_trades=20, min_sharpe=0.5, max_drawdown=0.3)
    assert [r.gate for r in evaluate(gates, {"trades": 1, "sharpe": 1, "max_drawdown": 0})] == [
        "min_trades", "min_sharpe", "max_drawdown",
    ]  # fmt: skip
    with pytest.raises(KeyError, match="metrics lack 'sharpe'"):
        evaluate(gates, {"trades": 1, "max_drawdown": 0})


@given(sharpe=st.floats(-5, 5), threshold=st.floats(0, 3))
def test_better_sharpe_never_gets_a_worse_status(sharpe, threshold):
    rank = {"FAIL": 0, "MARGINAL": 1, "PASS": 2}
    gates = Gates(min_trades=0, min_sharpe=threshold, max_drawdown=1.0)
    def status(s):
        return rank[evaluate(gates, {"trades": 0, "sharpe": s, "max_drawdown": 0})[1].status]
    assert status(sharpe + 0.1) >= status(sharpe)


def test_a_reason_never_says_a_value_is_below_an_equal_looking_gate():
    from engine.gates import _judge

    result = _judge("min_sharpe", 0.6996, 0.70)
    assert result.status != "PASS" and "0.6996 is below the gate 0.7" in result.reason
