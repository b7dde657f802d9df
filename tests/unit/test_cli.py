import csv
import json
import shutil
import subprocess
from datetime import UTC, datetime

import pytest

from cli import main
from engine.workspace import Workspace
from tests.conftest import shared_file

SPY_DAILY = "spy-daily-yahoo/yahoofinance-SPY-20080101-20180101.csv"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_console_script_is_installed():
    assert shutil.which("sigma"), "pip install -e . must install the sigma command"
    result = subprocess.run(["sigma", "--help"], capture_output=True, text=True, check=True)
    assert "packs" in result.stdout and "indicators" in result.stdout and "models" in result.stdout


@pytest.mark.parametrize("argv", [["--help"], ["packs", "--help"], ["packs", "validate", "--help"], ["indicators", "compute", "--help"], ["models", "create", "--help"]])
def test_help_everywhere(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0 and "usage: sigma" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["packs", "show", "nope"], "sigma: error: no pack named 'nope'; known packs: swingsigma, trendsigma, zerosigma\n"),
        (["indicators", "compute", "rsi", "--param", "period=1", "--input", "x.csv", "--output", "y.csv"], "sigma: error: --param.period: 1 is out of range; use 2 to 500\n"),
        (["indicators", "compute", "rsi", "--param", "period", "--input", "x.csv", "--output", "y.csv"], "sigma: error: --param: 'period' is not key=value; write e.g. --param period=14\n"),
        (["indicators", "compute", "rsi", "--input", "missing.csv", "--output", "y.csv"], "sigma: error: --input: no file at missing.csv\n"),
        (["models", "create", "--pack", "swingsigma", "--strategy", "momentum_swing", "--ticker", "spy", "--indicators", "rsi,vpin"], "sigma: error: indicators: 'vpin' is not in pack swingsigma@1.1.0; choose from: sma, ema, rsi, macd, bollinger, atr, adx, donchian, stochastic, roc, obv, zscore, volume_surge\n"),
    ],
)
def test_wrong_input_exits_2_with_one_line(capsys, workspace, argv, message):
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (2, "", message)


def test_argument_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["indicators", "list", "--group", "nope"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "invalid choice: 'nope'" in err


def test_packs_list_show_find_validate(capsys, workspace):
    code, out, _ = run(capsys, "packs", "list", "--json")
    assert code == 0 and [row["pack"] for row in json.loads(out)] == ["swingsigma@1.1.0", "trendsigma@1.1.0", "zerosigma@1.1.0"]
    code, out, _ = run(capsys, "packs", "show", "zerosigma")
    assert code == 0 and "default_dte: 0" in out
    code, out, _ = run(capsys, "packs", "find", "--risk", "conservative", "--direction", "long_only", "--timeframe", "swing", "--json")
    assert json.loads(out) == [{"pack": "swingsigma@1.1.0", "strategy": "mean_reversion"}]
    from packs import OFFICIAL

    code, out, _ = run(capsys, "packs", "validate", str(OFFICIAL / "trendsigma"))
    assert code == 0 and out.startswith("Pack Validation Report") and "Status: APPROVED" in out


def test_validate_reports_a_broken_pack_and_exits_1(capsys, tmp_path):
    (tmp_path / "pack.yaml").write_text("namespace: x\nname: x\n")
    code, out, _ = run(capsys, "packs", "validate", str(tmp_path), "--json")
    report = json.loads(out)
    assert code == 1 and report["status"] == "REJECTED"
    assert report["checks"][0]["name"] == "Schema" and "missing required field" in report["checks"][0]["detail"]


def test_indicators_list_by_group(capsys):
    code, out, _ = run(capsys, "indicators", "list", "--group", "microstructure", "--json")
    rows = json.loads(out)
    assert code == 0 and {row["name"] for row in rows} == {"order_book_imbalance", "microprice", "trade_sign_imbalance", "vpin"}
    assert all(row["summary"] and row["warmup"] >= 1 and row["timescales"] for row in rows)


@pytest.mark.parametrize("name", ["macd", "adx", "session_vwap"])
def test_compute_batch_and_stream_write_the_same_file(capsys, tmp_path, name):
    source = shared_file(SPY_DAILY)
    files = {}
    for mode in ("batch", "stream"):
        files[mode] = tmp_path / f"{mode}.csv"
        assert run(capsys, "indicators", "compute", name, "--input", str(source), "--mode", mode, "--output", str(files[mode]))[0] == 0
    assert files["batch"].read_bytes() == files["stream"].read_bytes()
    header, *rows = files["batch"].read_text().splitlines()
    assert header.startswith("date,") and len(rows) == 2519
    assert rows[-1].split(",")[1] != ""


def test_compute_reads_parquet_and_names_missing_columns(capsys, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"Close": [1.0, 2.0, 3.0, 4.0]}), tmp_path / "bars.parquet")
    code, _, _ = run(capsys, "indicators", "compute", "sma", "--param", "period=2", "--input", str(tmp_path / "bars.parquet"), "--output", str(tmp_path / "out.csv"))
    with (tmp_path / "out.csv").open() as handle:
        assert code == 0 and list(csv.reader(handle)) == [["sma"], [""], ["1.5"], ["2.5"], ["3.5"]]
    code, _, err = run(capsys, "indicators", "compute", "atr", "--input", str(tmp_path / "bars.parquet"), "--output", str(tmp_path / "out.csv"))
    assert code == 2 and err == "sigma: error: --input: atr needs columns high, low; the file has close\n"


def test_models_create_list_show(capsys, workspace):
    code, out, _ = run(capsys, "models", "create", "--pack", "swingsigma", "--strategy", "momentum_swing", "--ticker", "spy", "--param", "rsi.period=10", "--tag", "experience=expert")
    assert code == 0 and out == "created model spy_stock_days_1d (swingsigma@1.1.0 momentum_swing, adx, macd, roc, rsi, volume_surge)\n"
    code, out, _ = run(capsys, "models", "create", "--pack", "swingsigma", "--strategy", "momentum_swing", "--instrument", "options", "--ticker", "aapl", "--set", "default_dte=7", "--json")
    spec = json.loads(out)
    assert spec["name"] == "aapl_option_days_1d" and spec["instrument"]["default_dte"] == 7
    code, out, _ = run(capsys, "models", "list", "--json")
    assert [row["name"] for row in json.loads(out)] == ["aapl_option_days_1d", "spy_stock_days_1d"]
    code, out, _ = run(capsys, "models", "show", "spy_stock_days_1d", "--json")
    assert json.loads(out)["indicators"]["rsi"] == {"period": 10, "tolerance": 1e-4}  # the pack's warmup_tolerance
    assert (workspace / "sigma.db").exists()


def test_an_empty_or_header_only_input_is_one_line_naming_input(tmp_path, capsys):
    for content in ("", "close\n"):
        path = tmp_path / "prices.csv"
        path.write_text(content)
        assert main(["indicators", "compute", "rsi", "--input", str(path), "--output", str(tmp_path / "out.csv")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("sigma: error: --input: prices.csv") and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(
    ("setting", "field"),
    [("stop_loss=abc", "set.stop_loss"), ("stop_loss=-0.5", "set.stop_loss"), ("threshold=1.5", "set.threshold"),
     ("max_positions=2.5", "set.max_positions"), ("entry_type=fast", "set.entry_type"), ("allowed_hours=25", "set.allowed_hours"),
     ("hold_days=0", "set.hold_days"), ("stop_loss=", "set.stop_loss")],
)
def test_every_set_value_is_checked_before_any_sweep_work(setting, field, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SIGMA_HOME", str(tmp_path))
    assert main(["models", "create", "--pack", "swingsigma", "--strategy", "momentum_swing", "--ticker", "SPY", "--name", "m"]) == 0
    capsys.readouterr()
    assert main(["sweep", "run", "m", "--mode", "custom", "--set", setting]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sigma: error: {field}:") and len(err.strip().splitlines()) == 1, err
    with Workspace(tmp_path, clock=lambda: datetime.now(UTC)) as space:
        assert space.sweeps() == [], "refused before the sweep was recorded or any data read"
