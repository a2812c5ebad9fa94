"""A msgspec refusal of an order record, worded as (field path, rule) for the quarantine.

msgspec names the path (`$.installments[2].amount`) and the broken constraint; the rule's
wording comes from the field's type in `dunning.models.records` (its `description`), the
refused value from the record itself. Only refused records come here.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any, Literal, get_args, get_origin, get_type_hints

import msgspec
import msgspec.inspect as mi

from dunning.models.records import OrderRecord, RecordError

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.S)
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[([0-9]+)\]")
_MISSING = re.compile(r"Object missing required field `([^`]+)`")
_GOT = re.compile(r"got `([a-z]+)`")
_LENGTH = re.compile(r"of length ([<>]=) ([0-9]+)")
_BOUND = re.compile(r"`int` ([<>]=) ([0-9]+)")
_KIND = {
    mi.StrType: "a string",
    mi.IntType: "an integer",
    mi.StructType: "an object",
    mi.ListType: "an array",
}


def explain(exc: msgspec.ValidationError, obj: Any) -> RecordError:
    """The field and rule of a msgspec refusal of `obj` (the parsed JSON it refused)."""
    found = _AT.match(str(exc))
    msg, path = found["msg"], found["path"] or "$"
    steps = [name or int(index) for name, index in _STEP.findall(path)]
    missing = _MISSING.match(msg)
    if missing:
        return RecordError(_field([*steps, missing[1]]), "is required but missing")
    info, meta = _type_at(steps)
    if isinstance(info, mi.LiteralType):
        return RecordError(_field(steps), "must be one of " + _choices(steps))
    value = _value_at(obj, steps)
    return RecordError(_field(steps), _reason(msg, info, meta, value))


def _reason(msg: str, info: Any, meta: mi.Metadata | None, value: Any) -> str:
    rule = (meta.extra_json_schema or {}).get("description") if meta else None
    extra = (meta.extra or {}) if meta else {}
    got = _GOT.search(msg)
    if got:  # a wrong JSON type: msgspec names it (null, int, float, str, array, object)
        rule = rule or "must be " + _KIND.get(type(info), "of another type")
        return f"has the wrong type: {rule}, not {got[1]}"
    if rule:
        return f"{rule}; got '{str(value)[:40]}'" if extra.get("quote") else rule
    length = _LENGTH.search(msg)
    if length:
        side, n = length.groups()
        if side == ">=" and n == "1":
            return "must not be empty"
        return f"must have at {'most' if side == '<=' else 'least'} {n} characters"
    bound = _BOUND.search(msg)
    if bound:
        side, n = bound.groups()
        return f"must be an integer of at {'most' if side == '<=' else 'least'} {n}"
    if "array of length" in msg:
        return msg.replace("Expected `array` of length <=", "must have at most") + " entries"
    return msg


@cache
def _fields(struct: type) -> dict[str, Any]:
    return {f.name: f.type for f in mi.type_info(struct).fields}


def _type_at(steps: list[str | int]) -> tuple[Any, mi.Metadata | None]:
    """The type (and its constraints' metadata) that msgspec checked at `steps`."""
    info: Any = mi.type_info(OrderRecord)
    for step in steps:
        info, _ = _unwrap(info)
        if isinstance(step, int) and isinstance(info, mi.ListType):
            info = info.item_type
        elif isinstance(step, str) and isinstance(info, mi.StructType):
            info = _fields(info.cls).get(step)
        else:
            return None, None
    return _unwrap(info)


def _unwrap(info: Any) -> tuple[Any, mi.Metadata | None]:
    if isinstance(info, mi.UnionType):  # `X | None`: the X
        info = next(t for t in info.types if not isinstance(t, mi.NoneType))
    if isinstance(info, mi.Metadata):
        return info.type, info
    return info, None


def _value_at(obj: Any, steps: list[str | int]) -> Any:
    for step in steps:
        try:
            obj = obj[step]
        except (KeyError, IndexError, TypeError):
            return None
    return obj


def _field(steps: list[str | int]) -> str:
    out = ""
    for step in steps:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out or "(record)"


def _choices(steps: list[str | int]) -> str:
    """The values of the Literal at `steps` in the contract's order (msgspec's own type
    info sorts them): read from the annotation of the Struct that holds the field."""
    owner = mi.type_info(OrderRecord)
    for step in steps[:-1]:
        owner, _ = _unwrap(owner)
        owner = owner.item_type if isinstance(step, int) else _fields(owner.cls)[step]
    owner, _ = _unwrap(owner)
    quoted = [repr(v) for v in _literal_args(get_type_hints(owner.cls)[steps[-1]])]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]


def _literal_args(hint: Any) -> tuple[Any, ...]:
    if get_origin(hint) is Literal:
        return get_args(hint)
    return next((a for a in map(_literal_args, get_args(hint)) if a), ())
