"""The published models a flow serves, loaded once and refreshed when the registry changes.

Each worker process keeps one `Registry`. It reads the workspace's published models,
loads each through `Workspace.load_trained` (its manifest and ONNX bytes checked
against the hashes sealed at training), and resolves what the live steps need: the
model's universe (the sweep's tickers), its calendar, its policy, its instrument
settings and lineage. ``refresh`` polls `Workspace.registry_version` at most every
``poll_seconds`` of wall time, so a model published, unpublished or killed while the
flow runs is picked up without a restart.

The feed declares what its prices are (``adjustment``: raw, split or total_return); a
model whose history, as trained or as stored for its warm-up, the feed does not
continue as one series (`engine.store.continues`) is refused, so Close and Adj
Close are never mixed in one model's features (case 15).

A model refused by its check stops the flow from starting. Once the flow runs, a
refusal is reported on stderr and the flow goes on: a model loaded before keeps the
copy that passed its check then (with its current kill switch), a new one is left out.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from engine.cadence import parse_cadence
from engine.calendar import ExchangeClock, bars_per_year, calendar
from engine.errors import ConfigError, IntegrityError
from engine.features import model_features, needs_ticks
from engine.models import FutureSettings, InstrumentSettings, OptionSettings
from engine.policy import Policy
from engine.schemas import Lineage
from engine.scoring import Manifest, Scorer
from engine.store import ADJUSTMENTS, histories
from engine.workspace import Workspace
from packs import catalog

__all__ = ["ServingModel", "Registry"]

_DEFAULT_CALENDAR = "us_equities"


class ServingModel(msgspec.Struct, frozen=True, kw_only=True):
    """A published model as the flow serves it."""

    trained_id: str
    manifest: Manifest
    scorer: Scorer
    settings: InstrumentSettings
    lineage: Lineage
    universe: tuple[str, ...]
    cadence: str
    evaluation: str | None
    """The cadence of the intervals it decides at inside its bars; None: at each close."""
    clock: ExchangeClock
    policy: Policy
    """The chosen sweep row's policy, cooldown and daily cap included, as the backtest ran it."""
    sessions_per_year: float
    intraday: bool
    multiplier: int
    ticks: bool
    """True when a feature reads ticks (the pipeline then takes every tick)."""
    killed: bool

    @property
    def negative_prices(self) -> bool:
        return isinstance(self.settings, FutureSettings)


class Registry:
    """The published models of one workspace, by trained id and by ticker."""

    def __init__(self, home: Path, *, poll_seconds: float = 2.0, only: tuple[str, ...] = (), paper: bool = False,
                 adjustment: str = "raw") -> None:
        if adjustment not in ADJUSTMENTS:
            raise ConfigError("adjustment", f"{adjustment!r} is not a kind of prices", f"use one of: {', '.join(ADJUSTMENTS)}")
        self.home = Path(home)
        self.adjustment = adjustment
        """What the feed's prices are: every served model's history must be continued by them."""
        self.poll_seconds = poll_seconds
        self.only = only
        """Serve only these trained ids (empty: every published model)."""
        self.paper = paper
        """Serve the ``only`` models whether or not they are published: a paper-trading replay of trained models."""
        self.version = -1
        self.models: dict[str, ServingModel] = {}
        self.by_ticker: dict[str, list[ServingModel]] = {}
        self._polled = 0.0
        self._scorers: dict[str, Scorer] = {}  # by artifact SHA: a republished model is not loaded twice
        self.refresh(force=True)

    def refresh(self, *, force: bool = False) -> bool:
        """Reload when the workspace's registry version moved; True when it did."""
        now = time.monotonic()
        if not force and now - self._polled < self.poll_seconds:
            return False
        self._polled = now
        with Workspace(self.home, clock=lambda: datetime.now(UTC)) as space:
            version = space.registry_version()
            if version == self.version:
                return False
            records = [r for r in space.trained_models(published=None if self.paper else True) if not self.only or r.id in self.only]
            models = {}
            for record in records:
                try:
                    models[record.id] = self._serving(space, record.id)
                except (IntegrityError, ConfigError) as error:
                    if self.version == -1:
                        raise
                    loaded = self.models.get(record.id)
                    kept = "keeps serving the copy loaded before" if loaded else "is not served"
                    print(f"sigma: {error}; {record.id} {kept}", file=sys.stderr)
                    if loaded is not None:
                        models[record.id] = msgspec.structs.replace(loaded, killed=record.killed_at is not None)
        self.version, self.models = version, models
        by_ticker: dict[str, list[ServingModel]] = {}
        for model in models.values():
            for ticker in model.universe:
                by_ticker.setdefault(ticker, []).append(model)
        self.by_ticker = by_ticker
        return True

    @property
    def tickers(self) -> list[str]:
        return sorted(self.by_ticker)

    def _serving(self, space: Workspace, trained_id: str) -> ServingModel:
        record, model = space.load_trained(trained_id)
        manifest = msgspec.convert(record.manifest, Manifest)
        scorer = self._scorers.get(record.artifact_sha)
        if scorer is None:
            scorer = self._scorers[record.artifact_sha] = Scorer(model, manifest)
        spec = space.model(record.model)
        pack = catalog(self.home).get(f"{spec.pack}@{spec.pack_version}")
        universe = tuple(space.sweep_request(manifest.sweep).universe or [spec.instrument.symbol])
        stored = histories(self.home, record.id, manifest.cadence, universe, manifest.adjustment, self.adjustment)
        # No stored history: the default equities calendar.
        cal = calendar(stored[universe[0]].calendar if universe[0] in stored else _DEFAULT_CALENDAR)
        return ServingModel(
            trained_id=record.id,
            manifest=manifest,
            scorer=scorer,
            settings=spec.instrument,
            lineage=msgspec.structs.replace(manifest.lineage, artifact_sha=record.artifact_sha),
            universe=universe,
            cadence=manifest.cadence,
            evaluation=manifest.evaluation,
            clock=ExchangeClock(cal),
            policy=Policy.from_parameters(manifest.policy["parameters"], where=f"{record.id}: policy.parameters"),
            sessions_per_year=bars_per_year(cal, "1d"),
            intraday=parse_cadence(manifest.evaluation or manifest.cadence).minutes is not None,  # its rows' cadence
            multiplier=pack.options.multiplier if isinstance(spec.instrument, OptionSettings) and pack.options else 100,
            ticks=any(needs_ticks(f.indicator) for f in model_features(manifest.features, manifest.indicators)),
            killed=record.killed_at is not None,
        )
