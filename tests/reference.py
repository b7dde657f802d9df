"""Naive, obviously-correct references: TA-Lib where it has the indicator, plain numpy otherwise."""

from __future__ import annotations

import math

import numpy as np
import talib
from scipy.stats import norm


def _shifted(x: np.ndarray, by: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    out[by:] = x[:-by]
    return out


def _rolling(x: np.ndarray, period: int, reduce) -> np.ndarray:
    out = np.full(x.size, np.nan)
    for end in range(period, x.size + 1):
        out[end - 1] = reduce(x[end - period : end])
    return out


def realised_volatility(d, period):
    returns = np.concatenate([[np.nan], np.diff(np.log(d["close"]))])
    out = _rolling(returns, period, lambda w: np.std(w, ddof=1))
    out[:period] = np.nan
    return [out]


def session_vwap(d):
    typical = (d["high"] + d["low"] + d["close"]) / 3.0
    out = np.empty(typical.size)
    start = 0
    for i in range(typical.size):
        if d["session"][i] != d["session"][start]:
            start = i
        volume = d["volume"][start : i + 1]
        out[i] = np.dot(typical[start : i + 1], volume) / volume.sum()
    return [out]


def order_book_imbalance(d, period):
    imbalance = (d["bid_size"] - d["ask_size"]) / (d["bid_size"] + d["ask_size"])
    return [_rolling(imbalance, period, np.mean)]


def microprice(d):
    return [(d["bid"] * d["ask_size"] + d["ask"] * d["bid_size"]) / (d["bid_size"] + d["ask_size"])]


def trade_sign_imbalance(d, period):
    change = np.concatenate([[np.nan], np.diff(d["price"])])
    signed = np.sign(change) * d["size"]
    out = np.full(signed.size, np.nan)
    for end in range(period + 1, signed.size + 1):
        out[end - 1] = signed[end - period : end].sum() / d["size"][end - period : end].sum()
    return [out]


def vpin(d, period):
    change = np.concatenate([[np.nan], np.diff(d["close"])])
    sigma = _rolling(change, period, np.std)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sigma > 0.0, change / sigma, 0.0)  # no movement at all: half buys, half sells
    buy_share = np.array([0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in z])
    buy_share[np.isnan(sigma)] = np.nan
    imbalance = d["volume"] * np.abs(2.0 * buy_share - 1.0)
    out = np.full(change.size, np.nan)
    for end in range(2 * period, change.size + 1):
        window = slice(end - period, end)
        out[end - 1] = imbalance[window].sum() / d["volume"][window].sum()
    return [out]


def bollinger(d, period, deviations):
    upper, middle, lower = talib.BBANDS(d["close"], period, deviations, deviations)
    return [middle, upper, lower, (d["close"] - lower) / (upper - lower), (upper - lower) / middle]


def donchian(d, period):
    upper = talib.MAX(d["high"], period)
    lower = talib.MIN(d["low"], period)
    return [upper, lower, (upper + lower) / 2.0]


def obv(d, period):
    running = talib.OBV(d["close"], d["volume"])
    return [running - _shifted(running, period)]


REFERENCES = {
    "sma": lambda d, period: [talib.SMA(d["close"], period)],
    "ema": lambda d, period: [talib.EMA(d["close"], period)],
    "wma": lambda d, period: [talib.WMA(d["close"], period)],
    "rsi": lambda d, period: [talib.RSI(d["close"], period)],
    "macd": lambda d, fast, slow, signal_period: list(talib.MACD(d["close"], fast, slow, signal_period)),
    "roc": lambda d, period: [talib.ROC(d["close"], period)],
    "stochastic": lambda d, k_period, k_smoothing, d_period: list(
        talib.STOCH(d["high"], d["low"], d["close"], k_period, k_smoothing, 0, d_period, 0)
    ),
    "bollinger": bollinger,
    "atr": lambda d, period: [talib.ATR(d["high"], d["low"], d["close"], period)],
    "realised_volatility": realised_volatility,
    "zscore": lambda d, period: [
        (d["close"] - talib.SMA(d["close"], period)) / talib.STDDEV(d["close"], period)
    ],
    "donchian": donchian,
    "adx": lambda d, period: [
        talib.ADX(d["high"], d["low"], d["close"], period),
        talib.PLUS_DI(d["high"], d["low"], d["close"], period),
        talib.MINUS_DI(d["high"], d["low"], d["close"], period),
    ],
    "obv": obv,
    "session_vwap": session_vwap,
    "volume_surge": lambda d, period: [d["volume"] / talib.SMA(d["volume"], period)],
    "order_book_imbalance": order_book_imbalance,
    "microprice": microprice,
    "trade_sign_imbalance": trade_sign_imbalance,
    "vpin": vpin,
}
"""Reference outputs per registry name, in the indicator's output order."""

TALIB_BACKED = {"sma", "ema", "wma", "rsi", "macd", "roc", "stochastic", "bollinger", "atr", "zscore", "donchian", "adx", "obv", "volume_surge"}


def black_scholes(kind: int, spot: float, strike: float, years: float, volatility: float) -> float:
    """A call's (``kind`` +1) or put's (-1) value at a zero rate, from the textbook formula and scipy's normal CDF."""
    d1 = (math.log(spot / strike) + 0.5 * volatility**2 * years) / (volatility * math.sqrt(years))
    d2 = d1 - volatility * math.sqrt(years)
    if kind > 0:
        return spot * norm.cdf(d1) - strike * norm.cdf(d2)
    return strike * norm.cdf(-d2) - spot * norm.cdf(-d1)
