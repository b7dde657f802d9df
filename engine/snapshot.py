"""Live state as versioned msgpack values, readable by a later version of the code.

A Bytewax step's ``snapshot()`` returns bytes from `encode_state`; Bytewax pickles
only those bytes, which no code change can break. The bytes are a `Snapshot`: the
*layout version* of the state and the state itself, built only of

- instances of the classes registered with `state`: a slotted class is written field
  by field (its ``__slots__`` and its bases'), a msgspec Struct field by field and
  tagged with its class, so both decode to their type;
- numpy arrays (dtype, shape, bytes), tuples, lists, sets, frozensets, deques, dicts
  (with any keys msgpack holds: str, int, tuples of them), str, bytes, int, bool,
  None, float (NaN and infinities bit for bit), dates and timezone-aware datetimes.

Anything else fails at snapshot time with the name of its class: nothing is pickled
by accident. A member that is not state (an ONNX scorer, an exchange clock's caches)
is declared by its class, ``@state(derived=(...))``, and rebuilt from the state by
the class's ``rebuild()`` after a restore.

The *layout* (`layout`) lists every registered class with its fields in order (and
the revision a class declares when its fields keep their names but change form, as
arrays of another width do), the Bytewax version and this encoding's format; its
hash is the layout version. A new
version of the code with the same layout reads the snapshots of the old one; a
snapshot of another layout is refused (`decode_state`), and `Layout.changes` says
what differs.

State is restored as a tree: an object reached twice in one snapshot comes back as
two copies. numpy scalars come back as the Python number of the same value.
"""

from __future__ import annotations

import hashlib
from collections import deque
from datetime import date, datetime
from importlib.metadata import version
from typing import TypeVar

import msgspec
import numpy as np

from engine.errors import ConfigError

__all__ = ["state", "encode_state", "decode_state", "copy_state", "layout", "Layout", "Snapshot"]

T = TypeVar("T")
"""Type of the decoded state."""

_FORMAT = 1
"""The encoding's own version: change it with any change to the tags below or to `Snapshot`."""
_OBJECT, _TUPLE, _SET, _FROZENSET, _DEQUE, _ARRAY, _DATE, _DICT = range(1, 9)  # msgpack extension codes
_NATIVE = frozenset((str, int, float, bool, type(None), bytes))  # what msgpack gives back as it was
_FLOATS = frozenset((float, np.float64))
_FIX = "delete the recovery folder to start fresh (the flow then replays from the source's start), or point --recovery at a new one"

_CLASSES: dict[type, tuple[str, tuple[str, ...], bool, bool]] = {}
"""Registered class -> (name, state fields in order, whether it is a msgspec Struct, whether it has derived members)."""
_REVISIONS: dict[str, int] = {}
_NAMED: dict[str, type] = {}
_version: str | None = None  # of the current layout, once asked for


class Layout(msgspec.Struct, frozen=True):
    """What snapshot bytes depend on: every state class with its fields in order, the Bytewax version, the format."""

    format: int
    bytewax: str
    classes: dict[str, tuple[str, ...]]
    revisions: dict[str, int] = msgspec.field(default_factory=dict)
    """Classes past their first revision: ``@state(revision=2)``."""

    @property
    def version(self) -> str:
        return hashlib.sha256(msgspec.json.encode(self)).hexdigest()[:16]

    def changes(self, written: Layout) -> list[str]:
        """What differs from the ``written`` layout, one phrase each ("BarBuilder gained field `x`")."""
        found = []
        if written.format != self.format:
            found.append(f"the snapshot format went from {written.format} to {self.format}")
        if written.bytewax != self.bytewax:
            found.append(f"Bytewax went from {written.bytewax} to {self.bytewax}")
        for name in sorted(written.classes.keys() | self.classes.keys()):
            before, now = written.classes.get(name), self.classes.get(name)
            if before is None:
                found.append(f"class {name} is new")
            elif now is None:
                found.append(f"class {name} is gone")
            elif before != now:
                gained = [field for field in now if field not in before]
                lost = [field for field in before if field not in now]
                for verb, fields in (("gained", gained), ("lost", lost)):
                    if fields:
                        found.append(f"{name} {verb} field{'s' * (len(fields) > 1)} {', '.join(f'`{f}`' for f in fields)}")
                if not gained and not lost:
                    found.append(f"{name}'s fields changed order")
        for name in sorted(written.revisions.keys() | self.revisions.keys()):
            before, now = written.revisions.get(name, 1), self.revisions.get(name, 1)
            if before != now and name in written.classes and name in self.classes:
                found.append(f"{name}'s state changed form (revision {before} to {now})")
        return found


class Snapshot(msgspec.Struct, frozen=True, array_like=True):
    """One snapshot value: the layout version it was written with, and the state in msgpack."""

    layout: str
    state: msgspec.Raw


def state(cls: type | None = None, /, *, derived: tuple[str, ...] = (), revision: int = 1):
    """Register ``cls`` as snapshot state: ``@state``, or ``@state(derived=(...))`` naming slots that are not state.

    A class with derived members defines ``rebuild(self)``, which sets them from the
    restored state. Slotted classes only (every base declares ``__slots__``), so the
    fields are known before any instance exists; msgspec Structs have no derived members.
    Raise ``revision`` when a field keeps its name but not its form (an array's width),
    so that snapshots of the old form are refused rather than misread.
    """

    def register(cls: type) -> type:
        global _version
        name = cls.__qualname__
        if _NAMED.get(name, cls) is not cls:
            raise TypeError(f"two snapshot state classes are named {name}: rename one")
        if issubclass(cls, msgspec.Struct):
            if derived:
                raise TypeError(f"{name} is a msgspec Struct: every field is state")
            fields, struct = cls.__struct_fields__, True
        else:
            slotless = [base.__qualname__ for base in cls.__mro__[:-1] if "__slots__" not in vars(base)]
            if slotless:
                raise TypeError(f"{name} cannot be snapshot state: {', '.join(slotless)} declares no __slots__")
            slots = [slot for base in reversed(cls.__mro__) for slot in _slots(base)]
            unknown = set(derived) - set(slots)
            if unknown:
                raise TypeError(f"{name} has no slot {', '.join(sorted(unknown))} to derive")
            if derived and not callable(getattr(cls, "rebuild", None)):
                raise TypeError(f"{name} declares derived members but no rebuild() to set them")
            fields, struct = tuple(slot for slot in slots if slot not in derived), False
        _CLASSES[cls] = (name, fields, struct, bool(derived))
        _NAMED[name] = cls
        if revision != 1:
            _REVISIONS[name] = revision
        _version = None
        return cls

    return register if cls is None else register(cls)


def _slots(cls: type) -> tuple[str, ...]:
    slots = vars(cls).get("__slots__", ())
    return (slots,) if isinstance(slots, str) else tuple(slots)


def layout() -> Layout:
    """The layout of the registered state classes (of the modules imported so far)."""
    classes = {name: fields for name, fields, _, _ in sorted(_CLASSES.values())}
    return Layout(_FORMAT, version("bytewax"), classes, {name: _REVISIONS[name] for name in sorted(_REVISIONS) if name in classes})


def _layout_version() -> str:
    global _version
    if _version is None:
        _version = layout().version
    return _version


def copy_state(source: object, target: object) -> None:
    """Overwrite ``target``'s state with ``source``'s, field by field as a snapshot carries it, allocating nothing.

    Both are instances of one registered slotted class with buffers of the same sizes
    (an indicator and its twin): lists and arrays are copied element by element, parts
    that are registered slotted state recursively, everything else (numbers, flags,
    frozen Structs) by reference.
    """
    for name in _CLASSES[type(source)][1]:
        value = getattr(source, name)
        kind = type(value)
        if kind is list or kind is np.ndarray:
            getattr(target, name)[:] = value
        elif kind in _CLASSES and not _CLASSES[kind][2]:
            copy_state(value, getattr(target, name))
        elif kind in (dict, set, deque):
            raise TypeError(f"{type(source).__qualname__}.{name}: a {kind.__name__} cannot be copied in place")
        else:
            setattr(target, name, value)


def encode_state(value: object) -> bytes:
    """``value`` as snapshot bytes; TypeError naming the class of anything in it that is not snapshot state."""
    return _encoder.encode(Snapshot(_layout_version(), msgspec.Raw(_encoder.encode(_pack(value)))))


def decode_state(data: bytes, kind: type[T]) -> T:
    """The ``kind`` value of snapshot bytes; `ConfigError` when they were written with another state layout."""
    snapshot = _envelope.decode(data)
    current = _layout_version()
    if snapshot.layout != current:
        raise ConfigError("recovery", f"a snapshot of state layout {snapshot.layout} cannot be restored by code of layout "
                          f"{current}: the state classes or Bytewax changed since it was written", _FIX)  # fmt: skip
    value = _decoder.decode(snapshot.state)
    if type(value) is not kind:
        raise TypeError(f"the snapshot holds a {type(value).__qualname__}, not a {kind.__qualname__}")
    return value


# -- encoding ------------------------------------------------------------------------


def _pack(value: object) -> object:
    """``value`` with every part msgpack would not give back as it was (objects, tuples, sets, ...) as an extension."""
    kind = type(value)
    if kind in _NATIVE:
        return value
    if kind is list:
        return _packed(value)  # type: ignore[arg-type]
    if kind is dict:
        if set(map(type, value)) <= _NATIVE:  # type: ignore[arg-type]
            return value if set(map(type, value.values())) <= _NATIVE else {key: _pack(item) for key, item in value.items()}  # type: ignore[attr-defined]
        return _ext(_DICT, [[_pack(key), _pack(item)] for key, item in value.items()])  # type: ignore[attr-defined]  # an extension is no key
    registered = _CLASSES.get(kind)
    if registered is not None:
        name, fields, _, _ = registered
        return _ext(_OBJECT, [name, *[_pack(getattr(value, field)) for field in fields]])
    packer = _PACKERS.get(kind)
    if packer is not None:
        return packer(value)
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    raise TypeError(f"{kind.__module__}.{kind.__qualname__} is not snapshot state: register it with engine.snapshot.state")


def _packed(items: list | tuple | set | frozenset) -> object:
    """The items of a container, packed; most often a buffer of numbers, checked in one pass and written as it is."""
    kinds = set(map(type, items))
    if kinds <= _NATIVE:
        return items
    if kinds <= _FLOATS:  # numpy's float64 (a history replayed from arrays): the same bits as a float
        return list(map(float, items))
    return [_pack(item) for item in items]


def _ext(code: int, payload: object) -> msgspec.msgpack.Ext:
    return msgspec.msgpack.Ext(code, _encoder.encode(payload))


def _datetime(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise TypeError("a naive datetime cannot be snapshot state: give it a timezone")
    return value  # msgpack's timestamp; it comes back in UTC


def _array(value: np.ndarray) -> msgspec.msgpack.Ext:
    if value.dtype.hasobject:
        raise TypeError("a numpy array of Python objects cannot be snapshot state")
    return _ext(_ARRAY, [value.dtype.str, list(value.shape), value.tobytes()])


_PACKERS = {
    tuple: lambda value: _ext(_TUPLE, _packed(value)),
    set: lambda value: _ext(_SET, _packed(value)),
    frozenset: lambda value: _ext(_FROZENSET, _packed(value)),
    deque: lambda value: _ext(_DEQUE, [value.maxlen, _packed(list(value))]),
    np.ndarray: _array,
    date: lambda value: _ext(_DATE, value.toordinal()),
    datetime: _datetime,
}


# -- decoding ------------------------------------------------------------------------


def _unpack(code: int, data: memoryview) -> object:
    payload = _decoder.decode(data)  # its own extensions are unpacked first, innermost out
    if code == _OBJECT:
        cls = _NAMED[payload[0]]
        _, fields, struct, derived = _CLASSES[cls]
        if struct:
            return cls(**dict(zip(fields, payload[1:])))
        value = cls.__new__(cls)
        for field, item in zip(fields, payload[1:]):
            setattr(value, field, item)
        if derived:
            value.rebuild()
        return value
    if code == _TUPLE:
        return tuple(payload)
    if code == _SET:
        return set(payload)
    if code == _FROZENSET:
        return frozenset(payload)
    if code == _DEQUE:
        return deque(payload[1], payload[0])
    if code == _ARRAY:
        dtype, shape, raw = payload
        return np.frombuffer(raw, dtype).reshape(shape).copy()  # a copy: the step writes to its arrays
    if code == _DATE:
        return date.fromordinal(payload)
    if code == _DICT:
        return {key: item for key, item in payload}
    raise ValueError(f"unknown snapshot extension {code}")


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ext_hook=_unpack)
_envelope = msgspec.msgpack.Decoder(Snapshot)
