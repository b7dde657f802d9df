"""Canonical content hashes: equal content gives an equal hash, whatever the key order or formatting."""

from __future__ import annotations

import hashlib

import msgspec

__all__ = ["canonical_json", "content_sha"]

_encoder = msgspec.json.Encoder(order="sorted")


def canonical_json(value: object) -> bytes:
    """Compact JSON with every mapping's keys sorted; Structs become their field mappings."""
    return _encoder.encode(msgspec.to_builtins(value, order="sorted"))


def content_sha(value: object) -> str:
    """SHA-256 (hex) of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value)).hexdigest()
