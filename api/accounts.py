"""What a user of the server may do: tiers read from `tiers.yaml`, and a rate limit per token.

Users and their tokens live in the workspace (`engine.workspace.Workspace.add_user`);
this module holds the rules the server applies to them on every request.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Annotated

import msgspec
import yaml

from engine.errors import ConfigError, printable
from engine.models import ModelSpec, create_model
from engine.packs import Pack

__all__ = ["Tier", "TIERS", "tier", "RateLimiter", "users_model", "private_pack"]

MODEL_NAME_LIMIT = 64
PACK_VERSIONS = 50
"""Versions a private pack may keep: a tier counts packs, and each version is a file the server reads on every request."""


class Tier(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One plan: how many private packs, how large a custom sweep, how many requests a minute."""

    description: str
    private_packs: Annotated[int, msgspec.Meta(ge=-1)]
    """-1: without limit."""
    custom_sweep_configurations: Annotated[int, msgspec.Meta(ge=0)]
    """0: simple sweeps only."""
    requests_per_minute: Annotated[int, msgspec.Meta(gt=0)]


TIERS: dict[str, Tier] = msgspec.convert(yaml.safe_load((Path(__file__).parent / "tiers.yaml").read_text()), dict[str, Tier])


def tier(name: str) -> Tier:
    """The tier called ``name``; `ConfigError` naming the field and the tiers there are."""
    if name not in TIERS:
        raise ConfigError("tier", f"{name!r} is not a tier", f"use one of: {', '.join(TIERS)}")
    return TIERS[name]


class RateLimiter:
    """A token bucket per API token: ``requests_per_minute`` a minute on average, as many at once at most.

    Kept in the server process: a restart refills every bucket, which errs on the user's side.
    """

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # token hash -> (requests left, when last counted)

    def take(self, key: str, per_minute: int) -> float:
        """Count one request of ``key``: 0.0 when it may go ahead, else the seconds until it may."""
        now = self._clock()
        left, then = self._buckets.get(key, (float(per_minute), now))
        left = min(float(per_minute), left + (now - then) * per_minute / 60.0)
        if left < 1.0:
            self._buckets[key] = (left, now)
            return math.ceil((1.0 - left) * 60.0 / per_minute * 1000) / 1000
        self._buckets[key] = (left - 1.0, now)
        return 0.0


def users_model(pack: Pack, user: str, taken: set[str], **request: object) -> ModelSpec:
    """`engine.models.create_model` for a user of the server: named ``<user>_<name>``, unique among the user's own models
    (``taken``: every model name of the workspace), so that two users may each call theirs ``spy``."""
    prefix = f"{user}_"
    spec = create_model(pack, taken={name.removeprefix(prefix) for name in taken if name.startswith(prefix)}, **request)  # type: ignore[arg-type]
    named = prefix + spec.name
    if len(named) > MODEL_NAME_LIMIT:
        raise ConfigError("name", f"{named!r} is longer than {MODEL_NAME_LIMIT} characters", "choose a shorter name")
    return msgspec.structs.replace(spec, name=named)


def private_pack(pack: Pack, user: str) -> None:
    """Refuse a private pack of ``user`` whose namespace is not theirs: it begins ``<user>_``, so that two users' packs never
    collide and none can take another's namespace; `ConfigError` naming the field."""
    if not re.fullmatch(r"[a-z0-9_]{1,64}", pack.namespace):  # a folder name, and never a pack@version reference
        raise ConfigError("namespace", f"{printable(pack.namespace, 40)!r} is not a namespace", "use 1 to 64 of a-z, 0-9 and _")
    if not pack.namespace.startswith(f"{user}_"):
        raise ConfigError("namespace", f"{pack.namespace!r} does not begin with {user + '_'!r}: a private pack's namespace is its owner's",
                          f"name it {user}_{pack.namespace}")  # fmt: skip
