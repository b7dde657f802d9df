"""The HTTP API: what the ``sigma`` command does, for programs and the dashboard, on a workspace shared by its users.

Each endpoint is a thin call into what the command line calls (`engine.packs`,
`engine.models`, `engine.workspace`); no rule lives here. Bodies and answers are the
engine's msgspec structs, decoded and checked once, here at the edge.

Every route but ``/healthz`` needs ``Authorization: Bearer TOKEN`` (a token from
``sigma users token``). A user sees and changes only their own models; another
user's is answered 404, exactly as a model that does not exist. A bad request gets
one JSON error naming the field and the fix, in the command line's own words::

    {"error": {"field": "strategy", "problem": "...", "fix": "...", "message": "strategy: ...; ..."}}

401 without a valid token, 403 where the user's tier may not, 404 for what they
cannot see, 429 past their tier's requests a minute (with Retry-After).
"""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import pyarrow
import pyarrow.compute
import redis.asyncio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import packs
from api.accounts import PACK_VERSIONS, RateLimiter, private_pack, tier, users_model
from engine import names
from engine.errors import ConfigError, IntegrityError, NotFoundError, SigmaError
from engine.indicators import describe
from engine.models import SYMBOL_FIELD, ModelSpec, SweepRequest
from engine.packs import TAG_CATEGORIES, Catalog, decode_pack, validate
from engine.schemas import Alert, decode_json
from api.jobs import Jobs
from flows.sinks import ALERTS
from engine.workspace import SweepRecord, TrainedRecord, UserRecord, Workspace

__all__ = ["create_app", "ModelRequest"]

_JSON = "application/json"
_DASHBOARD = Path(__file__).with_name("dashboard.html")
_BODY_LIMIT = 1_000_000
"""Bytes a request body may have: a pack.yaml or a request is a few kilobytes."""


class ModelRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A model to create: ``sigma models create``'s options as one JSON object."""

    pack: str
    """namespace or namespace@version"""
    strategy: str
    instrument: Literal["stocks", "options", "futures"] | None = None
    ticker: str | None = None
    """The stock ticker, option underlying or futures contract root."""
    settings: dict[str, int | float | str] = {}
    indicators: list[str] | None = None
    params: dict[str, dict[str, int | float]] = {}
    risk_profile: Literal["conservative", "balanced", "aggressive"] | None = None
    cadence: str | None = None
    evaluation: str | None = None
    tags: dict[str, list[str]] = {}
    name: str | None = None
    """Your name for it (stored as ``<user>_<name>``); default ``<ticker>_<asset>_<horizon>_<cadence>``."""
    variant: str | None = None


class TrainingRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Rows of a finished sweep's leaderboard to train (``sigma train SWEEP --rows``)."""

    sweep: str
    rows: Annotated[list[Annotated[int, msgspec.Meta(ge=1)]], msgspec.Meta(min_length=1, max_length=20)]
    seed: int = 0


class PublishRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``sigma publish``'s options: ``force`` over a refusing verdict (audited, with ``reason``)."""

    force: bool = False
    reason: str | None = None


class _Problem(Exception):
    """An answer other than 200: its status, the field at fault, what is wrong and the fix."""

    def __init__(self, status: int, field: str, problem: str, fix: str = "", headers: dict[str, str] | None = None,
                 extra: dict | None = None) -> None:  # fmt: skip
        super().__init__(problem)
        self.status, self.field, self.problem, self.fix, self.headers, self.extra = status, field, problem, fix, headers or {}, extra or {}


def _sim_request() -> type:
    from replay.sim import SimRequest  # the replay stack, loaded when the schema is first asked for

    return SimRequest


def _json(value: object, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status_code=status, media_type=_JSON)


def _error(status: int, field: str, problem: str, fix: str = "", headers: dict[str, str] | None = None, extra: dict | None = None) -> Response:
    message = f"{field}: {problem}" if field else problem
    if fix:
        message += f"; {fix}"
    body = {"error": {"field": field, "problem": problem, "fix": fix, "message": message}} | (extra or {})
    return Response(msgspec.json.encode(body), status_code=status, media_type=_JSON, headers=headers)


def create_app(home: Path, *, cors_origins: tuple[str, ...] = (), limiter: RateLimiter | None = None, jobs: Jobs | None = None,
               redis_url: str | None = None) -> FastAPI:  # fmt: skip
    """The API over the workspace ``home``, its long work queued on ``jobs`` (the workspace's own queue by default), live
    alerts streamed from ``redis_url``; CORS stays off unless ``cors_origins`` names the origins allowed."""
    home = Path(home)
    limiter = limiter or RateLimiter()
    jobs = jobs or Jobs(home)
    app = FastAPI(title="Sigma", version="1", summary="Packs, models and trained models of a Sigma workspace, per user.")
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type"])  # fmt: skip

    def workspace() -> Workspace:
        return Workspace(home, clock=lambda: datetime.now(UTC))

    measuring = asyncio.Semaphore(1)

    @app.exception_handler(_Problem)
    async def problem(request: Request, error: _Problem) -> Response:
        return _error(error.status, error.field, error.problem, error.fix, error.headers, error.extra)

    @app.exception_handler(StarletteHTTPException)
    async def routing(request: Request, error: StarletteHTTPException) -> Response:  # no such route, a wrong method
        return _error(error.status_code, "", str(error.detail), "GET /docs lists the routes", dict(error.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0]
        return _error(400, ".".join(str(part) for part in first["loc"][1:]) or "request", first["msg"], "GET /docs shows each route's parameters")

    @app.exception_handler(ConfigError)
    async def bad_input(request: Request, error: ConfigError) -> Response:
        return _error(400, error.field, error.problem, error.fix)

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, error: NotFoundError) -> Response:
        return _error(404, "", str(error))

    @app.exception_handler(IntegrityError)
    async def tampered(request: Request, error: IntegrityError) -> Response:
        return _error(409, "", str(error))

    @app.exception_handler(SigmaError)
    async def refused(request: Request, error: SigmaError) -> Response:
        return _error(400, "", str(error))

    def user(request: Request) -> UserRecord:
        """The user of the request's bearer token, within their tier's rate; else 401 or 429."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _Problem(401, "Authorization", "no API token given", "send `Authorization: Bearer TOKEN` (`sigma users token NAME` issues one)",
                           {"WWW-Authenticate": "Bearer"})  # fmt: skip
        with workspace() as space:
            found = space.token_user(token.strip())
        if found is None:
            raise _Problem(401, "Authorization", "the API token is unknown or revoked", "ask for a new one (`sigma users token NAME`)",
                           {"WWW-Authenticate": "Bearer"})  # fmt: skip
        wait = limiter.take(token, tier(found.tier).requests_per_minute)
        if wait:
            raise _Problem(429, "", f"more than {tier(found.tier).requests_per_minute} requests a minute for the {found.tier} tier",
                           f"retry after {wait:g} s", {"Retry-After": str(max(1, round(wait)))})  # fmt: skip
        return found

    async def raw(request: Request) -> bytes:
        """The request's body, refused past `_BODY_LIMIT` (no request may make the server hold unbounded input)."""
        data = await request.body()
        if len(data) > _BODY_LIMIT:
            raise _Problem(413, "body", f"{len(data):,} bytes is more than {_BODY_LIMIT:,}", "send a smaller body")
        return data

    async def body(request: Request, kind: type) -> object:
        try:
            return msgspec.json.decode(await raw(request), type=kind)
        except msgspec.ValidationError as error:
            field = str(error).rpartition(" - at `$.")[2].rstrip("`") if " - at `$." in str(error) else "body"
            raise _Problem(400, field, str(error).partition(" - at ")[0], f"see the {kind.__name__} schema at /docs") from None
        except msgspec.DecodeError as error:
            raise _Problem(400, "body", f"not JSON ({error})", "send a JSON object") from None

    def owned(space: Workspace, model: str, who: UserRecord) -> None:
        """404 unless ``who`` owns ``model``: another user's model is as absent as one that does not exist."""
        names.name(model, "model")
        try:
            if space.owner(model) == who.name:
                return
        except NotFoundError:
            pass
        raise NotFoundError(f"no model named {model!r}; GET /api/models lists yours")

    @app.get("/", include_in_schema=False)
    def dashboard() -> Response:
        """The web dashboard: one page whose script asks the API with the token the user signs in with (kept in the tab's
        session storage only); the page itself holds no data, so it is served without a token, as the login is."""
        return Response(_DASHBOARD.read_bytes(), media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/healthz", tags=["health"])
    def healthz() -> Response:
        """Whether the server answers and its workspace opens (no token needed)."""
        with workspace() as space:
            return _json({"status": "ok", "schema": space.schema_version})

    @app.get("/api/me", tags=["account"])
    def me(who: UserRecord = Depends(user)) -> Response:
        """The token's user and what their tier allows."""
        return _json({"name": who.name, "tier": who.tier, "limits": tier(who.tier)})

    def private_packs(who: UserRecord) -> set[str]:
        """The namespaces of ``who``'s private packs."""
        with workspace() as space:
            return {namespace for namespace, owner in space.pack_owners().items() if owner == who.name}

    def catalog_of(who: UserRecord, every: Catalog | None = None) -> Catalog:
        """The packs ``who`` may see and build on, of ``every`` pack of the workspace: the official ones and their own."""
        theirs = private_packs(who)
        return (every or packs.catalog(home)).only(lambda pack: pack.namespace in packs.OFFICIAL_NAMESPACES or pack.namespace in theirs)

    @app.get("/api/packs", tags=["packs"])
    def pack_list(request: Request, q: str = "", who: UserRecord = Depends(user)) -> Response:
        """The official packs and your private ones, filtered by tags (``?risk=aggressive&timeframe=swing``) and a search of
        names and descriptions (``q``)."""
        wanted = {category: request.query_params[category] for category in TAG_CATEGORIES if category in request.query_params}
        catalog = catalog_of(who)
        matching = {pack.ref for pack, _ in catalog.find(**wanted)} if wanted else None
        rows = [
            {"pack": pack.ref, "description": pack.description, "horizon": pack.personality.time_horizon,
             "risk": pack.personality.risk_appetite, "instruments": pack.supported_instruments, "cadence": pack.cadence,
             "strategies": list(pack.strategies), "tags": pack.tags, "official": pack.namespace in packs.OFFICIAL_NAMESPACES}  # fmt: skip
            for pack in catalog
            if (matching is None or pack.ref in matching) and q.lower() in f"{pack.ref} {pack.description}".lower()
        ]
        return _json(rows)

    @app.get("/api/packs/{reference}", tags=["packs"])
    def pack_show(reference: str, who: UserRecord = Depends(user)) -> Response:
        """One pack in full."""
        return _json(catalog_of(who).get(names.name(reference, "pack")))

    @app.post("/api/packs/validate", tags=["packs"])
    async def pack_validate(request: Request, who: UserRecord = Depends(user)) -> Response:
        """The linter's report on a pack.yaml sent as the body (``sigma packs validate``); ``status`` REJECTED when it fails."""
        return _json(report_of(validate(await raw(request), catalog_of(who), source="pack.yaml")))

    def report_of(report) -> dict:
        return {"pack": report.pack, "status": report.status, "checks": report.checks, "disclaimer": report.disclaimer}

    async def private(request: Request, who: UserRecord, namespace: str | None) -> Response:
        """Keep the pack.yaml of the body as a private pack of ``who`` (a new one when ``namespace`` is None): the linter's
        report, 400 with it when it rejects the pack, 403 past the tier's count of private packs."""
        text = await raw(request)
        every = packs.catalog(home)
        report = validate(text, catalog_of(who, every), source="pack.yaml")
        if report.status == "REJECTED":
            failed = next(check for check in report.checks if check.status == "FAIL")
            raise _Problem(400, failed.field or "pack.yaml", failed.detail, "fix it and send the pack again (the report lists every check)",
                           extra={"report": report_of(report)})  # fmt: skip
        pack = decode_pack(text, source="pack.yaml")
        private_pack(pack, who.name)
        theirs = private_packs(who)
        versions = {other.ref for other in every if other.namespace == pack.namespace}
        if namespace is None and pack.namespace in theirs:
            raise ConfigError("namespace", f"you have a pack {pack.namespace!r}", f"PUT /api/packs/{pack.namespace} to change it")
        if namespace is None and versions:  # the command line's own pack of that name
            raise ConfigError("namespace", f"{pack.namespace!r} is taken", "choose another namespace")
        if namespace is not None and namespace != pack.namespace:
            raise ConfigError("namespace", f"{pack.namespace!r} is not {namespace!r}, the pack this request changes",
                              f"send {namespace}'s pack.yaml, or POST /api/packs to create {pack.namespace}")  # fmt: skip
        if len(versions) >= PACK_VERSIONS and pack.ref not in versions:
            raise _Problem(403, "version", f"{pack.namespace} keeps {len(versions)} versions, the most a private pack may",
                           f"delete old ones (DELETE /api/packs/{pack.namespace}@VERSION)")  # fmt: skip
        allowed = tier(who.tier).private_packs
        if pack.namespace not in theirs and 0 <= allowed <= len(theirs):
            raise _Problem(403, "pack", f"the {who.tier} tier keeps {allowed} private pack{'s' if allowed != 1 else ''} and you have {len(theirs)}",
                           "delete one, or use a tier with more")  # fmt: skip
        with workspace() as space:  # which checks the owner again, in its transaction
            space.save_pack(pack, text, owner=who.name, actor=who.name)
        return _json(report_of(report) | {"pack": pack.ref}, 201 if namespace is None else 200)

    @app.post("/api/packs", tags=["packs"], status_code=201)
    async def pack_create(request: Request, who: UserRecord = Depends(user)) -> Response:
        """Create a private pack from the pack.yaml sent as the body: its namespace begins with your name (``alice_...``);
        201 with the linter's report, 400 with the report when it rejects the pack, 403 past your tier's count."""
        return await private(request, who, None)

    @app.put("/api/packs/{namespace}", tags=["packs"])
    async def pack_update(namespace: str, request: Request, who: UserRecord = Depends(user)) -> Response:
        """Change one of your private packs: a new version beside the others, or a version that no model was made from
        replaced (400 naming ``version`` otherwise). The linter's report, as for create."""
        if names.name(namespace, "pack") not in private_packs(who):
            raise NotFoundError(f"no private pack {namespace!r} of yours; GET /api/packs lists the packs")
        return await private(request, who, namespace)

    @app.delete("/api/packs/{reference}", tags=["packs"])
    def pack_delete(reference: str, who: UserRecord = Depends(user)) -> Response:
        """Delete a private pack of yours (``namespace``: every version; ``namespace@version``: that one) that no model was
        made from."""
        namespace, _, version = names.name(reference, "pack").partition("@")
        if namespace not in private_packs(who):
            raise NotFoundError(f"no private pack {namespace!r} of yours; GET /api/packs lists the packs")
        with workspace() as space:
            deleted = space.delete_pack(namespace, version or None, actor=who.name)
        return _json({"pack": namespace, "deleted": deleted})

    @app.get("/api/indicators", tags=["models"])
    def indicator_list(group: str = "", who: UserRecord = Depends(user)) -> Response:
        """The indicator registry a model's indicators come from (``sigma indicators list``): parameters with their bounds,
        outputs, timescales and warm-up; ``group`` alone when given."""
        rows = describe(group or None)
        if group and not rows:
            raise ConfigError("group", f"{group!r} is not a group of indicators", f"use one of: {', '.join(sorted({r['group'] for r in describe()}))}")
        return _json(rows)

    @app.get("/api/models", tags=["models"])
    def model_list(who: UserRecord = Depends(user)) -> Response:
        """Your models."""
        with workspace() as space:
            specs = space.models(owner=who.name)
        return _json([{"name": s.name, "pack": f"{s.pack}@{s.pack_version}", "strategy": s.strategy, "cadence": s.cadence,
                       "evaluation": s.evaluation} for s in specs])  # fmt: skip

    @app.post("/api/models", tags=["models"], status_code=201,
              openapi_extra={"requestBody": {"required": True, "content": {_JSON: {"schema": {"$ref": "#/components/schemas/ModelRequest"}}}}})
    async def model_create(request: Request, dry_run: bool = False, who: UserRecord = Depends(user)) -> Response:
        """Create a model from a pack strategy (``sigma models create``); 400 names the field and the fix. ``dry_run``
        checks it and stores nothing (the dashboard's form asks as the user types)."""
        wanted: ModelRequest = await body(request, ModelRequest)  # type: ignore[assignment]
        with workspace() as space:
            spec = model_of(wanted, who, space.model_names())
            if dry_run:
                return _json(spec)
            space.add_model(spec, actor=who.name, owner=who.name)
        return _json(spec, 201)

    def model_of(wanted: ModelRequest, who: UserRecord, taken: set[str]) -> ModelSpec:
        """The spec of ``who``'s model as ``wanted``, named apart from the model names ``taken``."""
        pack = catalog_of(who).get(names.name(wanted.pack, "pack"))
        instrument = wanted.instrument or pack.default_instrument
        settings = dict(wanted.settings)
        if wanted.ticker:
            settings[SYMBOL_FIELD[instrument]] = names.ticker(wanted.ticker.strip().upper())
        return users_model(pack, who.name, taken, strategy=wanted.strategy, instrument=instrument, settings=settings,
                           indicators=wanted.indicators, params=wanted.params, risk_profile=wanted.risk_profile, cadence=wanted.cadence,
                           evaluation=wanted.evaluation, tags=wanted.tags, name=wanted.name, variant=wanted.variant)  # fmt: skip

    @app.put("/api/models/{model}", tags=["models"],
             openapi_extra={"requestBody": {"required": True, "content": {_JSON: {"schema": {"$ref": "#/components/schemas/ModelRequest"}}}}})
    async def model_update(model: str, request: Request, dry_run: bool = False, who: UserRecord = Depends(user)) -> Response:
        """Replace one of your models, keeping its name, by the request (the whole of it, as for create) while no sweep was
        run on it (400 naming ``model`` otherwise: its leaderboards were made from it as it is)."""
        wanted: ModelRequest = await body(request, ModelRequest)  # type: ignore[assignment]
        with workspace() as space:
            owned(space, model, who)
            short = model.removeprefix(f"{who.name}_")
            if wanted.variant is not None:
                raise ConfigError("variant", "an update keeps the model's name, which a variant would change", "leave variant out")
            if wanted.name not in (None, short, model):
                raise ConfigError("name", f"{wanted.name!r} is not {short!r}: an update keeps the model's name",
                                  "leave name out, or create a new model")  # fmt: skip
            spec = model_of(msgspec.structs.replace(wanted, name=short), who, space.model_names() - {model})
            if dry_run:
                return _json(spec)
            space.replace_model(spec, actor=who.name)
        return _json(spec)

    @app.get("/api/models/{model}", tags=["models"])
    def model_show(model: str, who: UserRecord = Depends(user)) -> Response:
        """One of your models in full."""
        with workspace() as space:
            owned(space, model, who)
            return _json(space.model(model))

    @app.delete("/api/models/{model}", tags=["models"])
    def model_delete(model: str, who: UserRecord = Depends(user)) -> Response:
        """Delete one of your models that no sweep was run on (400 naming ``model`` otherwise)."""
        with workspace() as space:
            owned(space, model, who)
            space.delete_model(model, actor=who.name)
        return _json({"name": model, "deleted": True})

    @app.get("/api/models/{model}/preview", tags=["models"])
    def model_preview(model: str, bars: int = 2000, who: UserRecord = Depends(user)) -> Response:
        """The model's feature columns over the last ``bars`` stored bars (``sigma preview``): missing and warm-up shares."""
        from research.preview import preview

        if not 1 <= bars <= 100_000:
            raise ConfigError("bars", f"{bars} is not between 1 and 100,000", "ask for fewer bars")
        with workspace() as space:
            owned(space, model, who)
            result = preview(home, space.model(model), bars)
        return _json(msgspec.to_builtins(result) | {"status": result.status})

    @app.get("/api/trained", tags=["trained models"])
    def trained_list(who: UserRecord = Depends(user)) -> Response:
        """Your trained models: whether each is published or killed, and why training marked one not publishable."""
        with workspace() as space:
            mine = space.trained_ids(who.name)
            records = [record for record in space.trained_models() if record.id in mine]
        return _json([{"id": r.id, "model": r.model, "sweep": r.sweep, "rank": r.rank, "created_at": r.created_at,
                       "published_at": r.published_at, "killed_at": r.killed_at, "refusal": r.refusal} for r in records])  # fmt: skip

    def own(space: Workspace, fetch, key: str, field: str, who: UserRecord, listing: str):
        """``fetch(key)`` (a sweep's or a trained model's record), if ``who`` owns its model; else 404, as for one that does
        not exist."""
        names.name(key, field)
        try:
            record = fetch(key)
            owned(space, record.model, who)
        except NotFoundError:
            raise NotFoundError(f"no {field} {key!r}; GET {listing} lists yours") from None
        return record

    def own_sweep(space: Workspace, sweep_id: str, who: UserRecord) -> SweepRecord:
        return own(space, space.sweep, sweep_id, "sweep", who, "/api/sweeps")

    def shown(record: SweepRecord) -> dict:
        best = (record.summary or {}).get("best", {})
        return {"id": record.id, "model": record.model, "status": record.shown_status, "done": record.done, "total": record.total,
                "created_at": record.created_at, "finished_at": record.finished_at, "tags": record.tags, "best": best}  # fmt: skip

    @app.post("/api/sweeps", tags=["sweeps"], status_code=202,
              openapi_extra={"requestBody": {"required": True, "content": {_JSON: {"schema": {"$ref": "#/components/schemas/SweepRequest"}}}}})
    async def sweep_start(request: Request, dry_run: bool = False, who: UserRecord = Depends(user)) -> Response:
        """Queue a sweep of one of your models (``sigma sweep run``): 202 with its id and its estimated run time, measured
        before it starts; a worker runs it. ``dry_run`` answers the size and the estimate and queues nothing. A custom sweep
        is capped by your tier (403 beyond it); a model without the bars it needs is refused (400 naming ``data``)."""
        from research import sweep

        wanted: SweepRequest = await body(request, SweepRequest)  # type: ignore[assignment]
        allowed = tier(who.tier).custom_sweep_configurations
        if wanted.mode == "custom" and not allowed:
            raise _Problem(403, "mode", f"the {who.tier} tier runs simple sweeps only", "use mode simple, or a tier with custom sweeps")
        wanted = msgspec.structs.replace(wanted, pro=allowed > sweep.CAP)  # the tier decides, not the request
        with workspace() as space:
            owned(space, wanted.model, who)
            spec = space.model(wanted.model)
            pack = packs.catalog(home).get(f"{spec.pack}@{spec.pack_version}")
            combinations = sweep.size(pack, spec, wanted)
            if wanted.mode == "custom" and combinations > allowed:
                raise _Problem(403, "overrides", f"{combinations:,} custom configurations exceed the {who.tier} tier's {allowed:,}",
                               "narrow an axis (overrides), or use a larger tier")  # fmt: skip
        async with measuring:  # a second or so of the machine's time each: one at a time, however many ask
            estimated = await run_in_threadpool(sweep.estimate, home, pack, spec, wanted)
        shown_estimate = msgspec.to_builtins(estimated) | {"seconds": round(estimated.seconds, 1)}
        if dry_run:
            return _json({"combinations": combinations, "estimate": shown_estimate})
        with workspace() as space:
            owned(space, wanted.model, who)
            if space.model(wanted.model).model_config_sha != spec.model_config_sha:  # replaced while it was measured
                raise ConfigError("model", f"{wanted.model} changed while its sweep was measured", "start the sweep again")
            sweep_id = sweep.create(space, pack, spec, wanted, actor=who.name)
        jobs.sweep(sweep_id, who.name)
        return _json({"id": sweep_id, "status": "queued", "combinations": combinations, "estimate": shown_estimate}, 202)

    @app.get("/api/sweeps", tags=["sweeps"])
    def sweep_list(request: Request, model: str = "", who: UserRecord = Depends(user)) -> Response:
        """Your sweeps, newest last; filter by ``model`` and by tags of the model (``?risk=aggressive``)."""
        wanted = {category: request.query_params[category] for category in TAG_CATEGORIES if category in request.query_params}
        with workspace() as space:
            mine = {spec.name for spec in space.models(owner=who.name)}
            records = [r for r in space.sweeps(model or None) if r.model in mine and all(v in r.tags.get(c, ()) for c, v in wanted.items())]
        return _json([shown(record) for record in records])

    @app.get("/api/sweeps/{sweep_id}", tags=["sweeps"])
    def sweep_status(sweep_id: str, who: UserRecord = Depends(user)) -> Response:
        """One sweep: status (queued, running, finished, cancelled, failed, killed), progress, and its best row once done."""
        with workspace() as space:
            return _json(shown(own_sweep(space, sweep_id, who)))

    @app.get("/api/sweeps/{sweep_id}/results", tags=["sweeps"])
    def sweep_results(sweep_id: str, top: int = 10, sort: str = "rank", descending: bool = False, format: Literal["json", "csv"] = "json",
                      gate: str = "", who: UserRecord = Depends(user)) -> Response:  # fmt: skip
        """The leaderboard of a finished sweep (``sigma sweep results``): its ``top`` rows sorted by a column, of the gate
        badges in ``gate`` alone when given (``PASS,MARGINAL``); ``format=csv`` gives every such row as CSV."""
        from research import leaderboard

        with workspace() as space:
            own_sweep(space, sweep_id, who)
            table, meta = leaderboard.load(space, sweep_id)
        if sort not in table.column_names:
            raise ConfigError("sort", f"{sort!r} is not a leaderboard column", f"use one of: {', '.join(table.column_names)}")
        badges = [badge.strip().upper() for badge in gate.split(",") if badge.strip()]
        if set(badges) - {"PASS", "MARGINAL", "FAIL"}:
            raise ConfigError("gate", f"{gate!r} names no gate badge", "use PASS, MARGINAL or FAIL, comma-separated")
        if badges:
            table = table.filter(pyarrow.compute.is_in(table.column("gate"), pyarrow.array(badges)))
        table = table.sort_by([(sort, "descending" if descending else "ascending")])
        if format == "csv":
            out = io.StringIO()
            leaderboard.write_csv(table, out)
            return Response(out.getvalue(), media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{sweep_id}.csv"'})
        return _json({"meta": meta, "rows": table.slice(0, max(top, 0)).to_pylist()})

    @app.post("/api/sweeps/{sweep_id}/cancel", tags=["sweeps"])
    def sweep_cancel(sweep_id: str, who: UserRecord = Depends(user)) -> Response:
        """Stop a sweep after its current chunk (a queued one never starts); finished work is kept for a resume."""
        from research import sweep

        with workspace() as space:
            own_sweep(space, sweep_id, who)
            sweep.cancel(space, sweep_id, actor=who.name)
            return _json(shown(space.sweep(sweep_id)))

    @app.post("/api/sweeps/{sweep_id}/resume", tags=["sweeps"], status_code=202)
    def sweep_resume(sweep_id: str, who: UserRecord = Depends(user)) -> Response:
        """Continue a cancelled, failed or killed sweep without redoing finished work: 202, a worker takes it."""
        with workspace() as space:
            record = own_sweep(space, sweep_id, who)
        if record.shown_status not in ("cancelled", "failed", "killed"):
            raise ConfigError("sweep", f"{sweep_id} is {record.shown_status}", "only a cancelled, failed or killed sweep resumes")
        jobs.sweep(sweep_id, who.name, again=True)
        return _json(shown(record), 202)

    def own_trained(space: Workspace, trained_id: str, who: UserRecord) -> TrainedRecord:
        return own(space, space.trained, trained_id, "trained model", who, "/api/trained")

    @app.post("/api/training", tags=["training"], status_code=202,
              openapi_extra={"requestBody": {"required": True, "content": {_JSON: {"schema": {"$ref": "#/components/schemas/TrainingRequest"}}}}})
    async def training_start(request: Request, who: UserRecord = Depends(user)) -> Response:
        """Train chosen rows of your finished sweep (``sigma train``): 202 with the trained ids and the selection's warnings;
        a worker fits them, each resuming from its checkpoints."""
        from research import training

        wanted: TrainingRequest = await body(request, TrainingRequest)  # type: ignore[assignment]
        with workspace() as space:
            own_sweep(space, wanted.sweep, who)
            _, warnings = training.select(space, wanted.sweep, wanted.rows)
            trained = training.queue(space, wanted.sweep, wanted.rows, actor=who.name, seed=wanted.seed)
        jobs.train(wanted.sweep, list(wanted.rows), who.name, seed=wanted.seed)
        return _json({"trained": trained, "warnings": warnings}, 202)

    @app.get("/api/training/{trained_id}", tags=["training"])
    def training_status(trained_id: str, who: UserRecord = Depends(user)) -> Response:
        """One row's training: its status (queued, running, done, failed, cancelled, killed), its last progress line, and once
        registered, whether training marked it not publishable."""
        from research import training

        names.name(trained_id, "trained")
        sweep_id, _, _ = trained_id.rpartition("-r")
        with workspace() as space:
            own_sweep(space, sweep_id, who)
            registered = {record.id: record for record in space.trained_models()}.get(trained_id)
        progress = training.progress(home / "training" / trained_id)
        return _json({"id": trained_id, "status": "done" if registered else training.status(home, trained_id),
                      "registered": registered is not None, "progress": progress, "refusal": registered.refusal if registered else None})  # fmt: skip

    @app.post("/api/training/{trained_id}/cancel", tags=["training"])
    def training_cancel(trained_id: str, who: UserRecord = Depends(user)) -> Response:
        """Ask a running training to stop after its current fit; POST /api/training again resumes it."""
        from research import training

        names.name(trained_id, "trained")
        with workspace() as space:
            own_sweep(space, trained_id.rpartition("-r")[0], who)
            training.cancel(space, trained_id)
        return _json({"id": trained_id, "cancel": "requested"})

    @app.get("/api/trained/{trained_id}", tags=["trained models"])
    def trained_review(trained_id: str, who: UserRecord = Depends(user)) -> Response:
        """A trained model's review (``sigma models review``): metrics, importance, samples, policy check, stage."""
        from replay.gate import stage

        with workspace() as space:
            record = own_trained(space, trained_id, who)
        return _json({"id": record.id, "model": record.model, "stage": stage(home, record.id, record.published_at is not None),
                      "published_at": record.published_at, "killed_at": record.killed_at, "refusal": record.refusal,
                      "manifest": record.manifest})  # fmt: skip

    @app.get("/api/trained/{trained_id}/review.png", tags=["trained models"])
    def trained_plot(trained_id: str, who: UserRecord = Depends(user)) -> Response:
        """Calibration, equity curves and feature importance as one PNG."""
        from research import review

        with workspace() as space:
            own_trained(space, trained_id, who)
            path = review.report(space, trained_id)
        return Response(path.read_bytes(), media_type="image/png")

    @app.post("/api/trained/{trained_id}/publish", tags=["trained models"])
    async def trained_publish(trained_id: str, request: Request, who: UserRecord = Depends(user)) -> Response:
        """Switch it on for alerting, through training's verdict and the paper record's (``sigma publish``): 400 names the
        verdict that refuses it; ``force`` overrides (audited with ``reason``)."""
        from replay.gate import publish

        wanted: PublishRequest = await body(request, PublishRequest) if await raw(request) else PublishRequest()  # type: ignore[assignment]
        with workspace() as space:
            own_trained(space, trained_id, who)
            version, overridden = publish(space, trained_id, actor=who.name, force=wanted.force, reason=wanted.reason)
        return _json({"id": trained_id, "published": True, "registry_version": version, "overridden": overridden})

    @app.post("/api/trained/{trained_id}/unpublish", tags=["trained models"])
    def trained_unpublish(trained_id: str, who: UserRecord = Depends(user)) -> Response:
        """Switch a published model off."""
        with workspace() as space:
            own_trained(space, trained_id, who)
            version = space.unpublish(trained_id, actor=who.name)
        return _json({"id": trained_id, "published": False, "registry_version": version})

    @app.post("/api/trained/{trained_id}/kill", tags=["trained models"])
    def trained_kill(trained_id: str, on: bool = True, who: UserRecord = Depends(user)) -> Response:
        """The kill switch (``?on=false`` turns it off): a published model opens no new position; its exits still alert."""
        with workspace() as space:
            own_trained(space, trained_id, who)
            version = space.kill(trained_id, on, actor=who.name)
        return _json({"id": trained_id, "killed": on, "registry_version": version})

    @app.delete("/api/trained/{trained_id}", tags=["trained models"])
    def trained_discard(trained_id: str, who: UserRecord = Depends(user)) -> Response:
        """Delete an unpublished trained model and its artifact (``sigma discard``)."""
        with workspace() as space:
            own_trained(space, trained_id, who)
            freed = space.discard(trained_id, actor=who.name)
        return _json({"id": trained_id, "discarded": True, "freed_bytes": freed})

    def own_run(space: Workspace, run_id: str, who: UserRecord):
        """The paper run, if ``who`` owns every model it replays; else 404, as for one that does not exist."""
        from replay import sim

        names.name(run_id, "run")
        try:
            run = sim.load(home, run_id)
            for model in run.request.models:
                own_trained(space, model, who)
        except NotFoundError:
            raise NotFoundError(f"no paper run {run_id!r}; GET /api/paper lists yours") from None
        return run

    def shown_run(run) -> dict:
        return {"id": run.run_id, "models": run.request.models, "status": run.shown_status, "phase": run.phase,
                "created_at": run.created_at, "tickers": run.tickers, "cadence": run.cadence, "summary": run.summary,
                "verdict": run.verdict, "error": run.error}  # fmt: skip

    @app.post("/api/paper", tags=["paper trading"], status_code=202,
              openapi_extra={"requestBody": {"required": True, "content": {_JSON: {"schema": {"$ref": "#/components/schemas/SimRequest"}}}}})
    async def paper_start(request: Request, who: UserRecord = Depends(user)) -> Response:
        """Paper-trade your trained models by replaying stored history through the live dataflow (``sigma sim run``): 202
        with the run's id; a worker runs it and the trust gate judges it."""
        from replay import sim

        wanted: sim.SimRequest = await body(request, sim.SimRequest)  # type: ignore[assignment]
        if wanted.redis_url is not None:
            raise ConfigError("redis_url", "a replay through the server runs on its own private redis-server", "leave redis_url out")
        if wanted.speed != "max":
            raise ConfigError("speed", f"{wanted.speed!r}: a replay through the server runs as fast as it goes", "use max")
        with workspace() as space:
            for model in wanted.models:
                own_trained(space, model, who)
            run = sim.start(space, wanted, actor=who.name)
        jobs.paper(run.run_id)
        return _json(shown_run(run), 202)

    @app.get("/api/paper", tags=["paper trading"])
    def paper_list(who: UserRecord = Depends(user)) -> Response:
        """Your paper runs, oldest first."""
        from replay import sim

        with workspace() as space:
            mine = space.trained_ids(who.name)
        return _json([shown_run(run) for run in sim.runs(home) if set(run.request.models) <= mine])

    @app.get("/api/paper/{run_id}", tags=["paper trading"])
    def paper_status(run_id: str, who: UserRecord = Depends(user)) -> Response:
        """One paper run: status (queued, running, done, cancelled, failed, killed), its account summary and verdict."""
        with workspace() as space:
            return _json(shown_run(own_run(space, run_id, who)))

    @app.post("/api/paper/{run_id}/cancel", tags=["paper trading"])
    def paper_cancel(run_id: str, who: UserRecord = Depends(user)) -> Response:
        """Stop a running paper run within a second (a queued one never starts)."""
        from replay import sim

        with workspace() as space:
            own_run(space, run_id, who)
        return _json(shown_run(sim.cancel(home, run_id)))

    @app.get("/api/paper/{run_id}/report", tags=["paper trading"])
    def paper_report(run_id: str, html: bool = False, who: UserRecord = Depends(user)) -> Response:
        """A finished run against the research backtest of the same bars (``sigma sim report``): the run, its verdict and
        the parity report as JSON, or ``?html=true`` the self-contained HTML report."""
        from replay import parity, report, sim

        from replay.gate import judge

        with workspace() as space:
            run = own_run(space, run_id, who)
        if run.status == "done" and run.verdict is None:  # done a moment before its worker judged it: judged here, as the CLI does
            judge(home, run_id)
            run = sim.load(home, run_id)
        if run.status != "done":
            raise ConfigError("run", f"{run_id} is {run.shown_status}", "its report exists once it is done")
        diff = parity.report(home, run_id)
        page = report.write(home, run, sim.account(home, run_id), diff)
        if html:
            return Response(page.read_bytes(), media_type="text/html")
        return _json({"run": run, "parity": diff})


    @app.get("/api/alerts", tags=["alerts"])
    def alert_list(model: str = "", ticker: str = "", since: str = "", limit: int = 100, who: UserRecord = Depends(user)) -> Response:
        """Your models' alerts from the durable history (kept by the server's archive, beyond the stream's trimming), newest
        first: filter by trained ``model``, ``ticker`` and ``since`` (ISO time); each says when you acknowledged it."""
        if not 1 <= limit <= 10_000:
            raise ConfigError("limit", f"{limit} is not between 1 and 10,000", "ask for fewer, and page with since")
        with workspace() as space:
            mine = space.trained_ids(who.name)
            if model:
                mine &= {model}
            rows = space.alerts(mine, ticker=ticker.upper() or None, since=since, limit=limit, user=who.name)
        return _json([msgspec.json.decode(alert) | {"acknowledged_at": at} for alert, at in rows])

    @app.get("/api/alerts/stream", tags=["alerts"])
    async def alert_stream(request: Request, who: UserRecord = Depends(user)) -> Response:
        """Your models' alerts as they are written (server-sent events, ``event: alert``, the entry id as ``id``); a reconnect
        with ``Last-Event-ID`` goes on after it."""
        if redis_url is None:
            raise _Problem(503, "", "this server streams no alerts: it was started without Redis", "start it with --redis-url")
        with workspace() as space:
            mine = space.trained_ids(who.name)
        client = redis.asyncio.Redis.from_url(redis_url)
        position = request.headers.get("last-event-id")
        if not position:  # the stream's end now, as an id: "$" at each read would miss what is written between two reads
            last = await client.xrevrange(ALERTS, count=1)
            position = last[0][0].decode() if last else "0-0"

        async def events():
            nonlocal position
            yield b": alerts of your models\n\n"  # from here on, every alert written is sent
            try:
                while not await request.is_disconnected():
                    reply = await client.xread({ALERTS: position}, count=100, block=1000)
                    if not reply:
                        yield b": waiting\n\n"  # a heartbeat: proxies keep the connection open
                        continue
                    for entry_id, fields in reply[0][1]:
                        position = entry_id.decode()
                        alert = msgspec.json.decode(fields[b"alert"])
                        if alert.get("model_id") in mine:
                            yield b"id: " + entry_id + b"\nevent: alert\ndata: " + fields[b"alert"] + b"\n\n"
            finally:
                await client.aclose()

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/api/alerts/{alert_id}", tags=["alerts"])
    def alert_show(alert_id: str, who: UserRecord = Depends(user)) -> Response:
        """One alert of yours from the history."""
        with workspace() as space:
            model, alert = space.alert(alert_id)
            if model not in space.trained_ids(who.name):
                raise NotFoundError(f"no alert {alert_id!r} in the history")
        return Response(alert, media_type=_JSON)

    @app.post("/api/alerts/{alert_id}/ack", tags=["alerts"])
    def alert_acknowledge(alert_id: str, who: UserRecord = Depends(user)) -> Response:
        """Acknowledge one alert of yours (the first acknowledgement stands), one just streamed too."""
        with workspace() as space:
            if alert_id.partition(":")[0] not in space.trained_ids(who.name):  # an alert id starts with its trained model
                raise NotFoundError(f"no alert {alert_id!r} of yours")
            at = space.acknowledge(alert_id, who.name)
        return _json({"alert_id": alert_id, "acknowledged_at": at})

    @app.get("/api/performance", tags=["alerts"])
    def performance(model: str = "", who: UserRecord = Depends(user)) -> Response:
        """How each of your trained models has done (or ``model`` alone): its trades in every finished paper run, with the
        trust gate's verdict, and its live alerts' round trips from the alert history, at the alerts' own prices before fees
        and slippage (`replay.track`)."""
        from replay import track
        from replay.gate import stage

        with workspace() as space:
            mine = space.trained_ids(who.name)
            if model:
                own_trained(space, model, who)
                mine = {model}
            records = [record for record in space.trained_models() if record.id in mine]
            kept = {record.id: [decode_json(alert, Alert) for alert in space.model_alerts(record.id)] for record in records}
        return _json([{"id": record.id, "model": record.model, "stage": stage(home, record.id, record.published_at is not None),
                       "paper": track.paper(home, record.id), "live": track.live(kept[record.id])} for record in records])  # fmt: skip

    @app.get("/api/audit", tags=["audit"])
    def audit(action: str = "", subject: str = "", who: UserRecord = Depends(user)) -> Response:
        """What you did, oldest first: filter by ``action`` (a prefix, such as ``model.``) and ``subject``."""
        with workspace() as space:
            entries = [entry for entry in space.audit_log(subject or None) if entry.actor == who.name and entry.action.startswith(action)]
        return _json(entries)

    schema = app.openapi

    def openapi() -> dict:
        """FastAPI's document, with the msgspec bodies' schemas among its components."""
        if app.openapi_schema is None:
            document = schema()
            _, components = msgspec.json.schema_components([ModelRequest, SweepRequest, TrainingRequest, PublishRequest, _sim_request()], ref_template="#/components/schemas/{name}")
            document.setdefault("components", {}).setdefault("schemas", {}).update(components)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app

