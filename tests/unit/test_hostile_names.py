"""Every command, given a hostile name where it takes a ticker, model, pack, sweep, trained model, run or account.

Each is refused in one line with exit status 2 before any work, and nothing is written
outside the workspace (or inside it).
"""

from __future__ import annotations

import os

import pytest

from cli import main
from engine import names
from engine.errors import ConfigError
from engine.store import bars_path

HOSTILE = ["../../../escaped", "/tmp/sigma-escaped", "a/b", "..", "SPY\nforged", ".hidden", "a b", "x" * 200]

M = "spy_stock_days_1d"
COMMANDS = [
    ["packs", "show", "{}"],
    ["models", "create", "--pack", "{}", "--strategy", "momentum"],
    ["models", "create", "--pack", "zerosigma", "--strategy", "vwap_reversion", "--ticker", "{}"],
    ["models", "create", "--pack", "zerosigma", "--strategy", "vwap_reversion", "--name", "{}"],
    ["models", "create", "--pack", "zerosigma", "--strategy", "vwap_reversion", "--variant", "{}"],
    ["models", "show", "{}"],
    ["models", "review", "{}"],
    ["data", "import", "bars.csv", "--ticker", "{}", "--cadence", "1d"],
    ["data", "import", "bars.csv", "--ticker", "SPY", "--cadence", "{}"],
    ["data", "check", "{}"],
    ["data", "check", "SPY", "--cadence", "{}"],
    ["data", "resample", "{}", "--from", "1m", "--to", "1d"],
    ["data", "synth", "--tickers", "{}", "--sessions", "5"],
    ["data", "synth", "--tickers", "SPY,{}", "--sessions", "5"],
    ["data", "synth", "--tickers", "SPY", "--sessions", "5", "--cadence", "{}"],
    ["preview", "{}"],
    ["sweep", "run", "{}"],
    ["sweep", "run", M, "--universe", "{}"],
    ["sweep", "cancel", "{}"],
    ["sweep", "resume", "{}"],
    ["sweep", "list", "--model", "{}"],
    ["sweep", "results", "{}"],
    ["sweep", "plot", "{}"],
    ["train", "{}", "--rows", "1"],
    ["backtest", "{}"],
    ["publish", "{}"],
    ["unpublish", "{}"],
    ["discard", "{}"],
    ["kill", "{}"],
    ["run", "--model", "{}", "--source", "files", "--file", "ticks.jsonl"],
    ["run", "--order", "{}", "--source", "files", "--file", "ticks.jsonl"],
    ["alerts", "tail", "--model", "{}"],
    ["sim", "run", "{}"],
    ["sim", "run", M, "--tickers", "{}"],
    ["sim", "live", "{}"],
    ["sim", "live", M, "--account", "{}"],
    ["sim", "resume", "{}"],
    ["sim", "cancel", "{}"],
    ["sim", "status", "{}"],
    ["sim", "status", "--account", "{}"],
    ["sim", "report", "{}"],
]


def _tree(root) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: " ".join(part for part in command if part != "{}")[:60])
def test_a_hostile_name_is_refused_in_one_line_and_nothing_is_written(command, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("SIGMA_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    for hostile in HOSTILE:
        argv = [part.replace("{}", hostile) for part in command]
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert "is not a" in err and "\nforged" not in err, err
    assert _tree(tmp_path) == before, "nothing written, in the workspace or beside it"
    assert not os.path.exists("/tmp/sigma-escaped")


def test_the_path_builders_refuse_what_the_edge_would():
    for hostile in HOSTILE:
        with pytest.raises(ConfigError, match="ticker"):
            bars_path(__import__("pathlib").Path("home"), hostile, "1d")
        with pytest.raises(ConfigError, match="run"):
            names.name(hostile, "run")
    for good in ("SPY", "BRK.B", "BF-B", "ES_F"):
        assert names.ticker(good) == good
    for good in ("zerosigma@1.1.0", "spy_option_minutes_1m-2a90cd32-r1-eager", "sim-20261203-072541-de65", "paper"):
        assert names.name(good) == good
