"""Checking one order record against the contract: decode, then the post-decode rules.

A file line is decoded straight into `OrderRecord` (`decode_line`, the reader does it);
a value that came parsed (an API page, a line msgspec refused) is converted by the same
types (`check_record`), so both routes share every rule and every wording. A refusal is a
`RecordError` naming the field (`installments[2].amount`) and the rule it broke.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from dunning.models.record_errors import explain
from dunning.models.record_rows import OrderRows
from dunning.models.record_rules import broken_rule, rows_or_broken_rule
from dunning.models.records import OrderRecord, RecordError, latest_moment

# The reader calls the decoder itself, a call less per line: `decode_record(line)` raises
# one of NOT_TYPED where `decode_line` returns None.
decode_record = msgspec.json.Decoder(OrderRecord).decode
NOT_TYPED = (msgspec.DecodeError, RecursionError)  # ValidationError is a DecodeError
_convert = msgspec.convert


def decode_line(line: bytes) -> OrderRecord | None:
    """The record typed straight from its JSON bytes, or None when its types do not fit
    (the caller then parses it plainly and `check_record` says why)."""
    try:
        return decode_record(line)
    except NOT_TYPED:
        return None


def check_record(
    obj: Any, latest: datetime | None = None, nul_free: bool = False
) -> OrderRecord | RecordError:
    """`obj`: an `OrderRecord` from `decode_line`, or any parsed JSON value.
    `latest`: `latest_moment()` of the run. `nul_free`: see `broken_rule`."""
    typed = _typed(obj)
    if type(typed) is RecordError:
        return typed
    problem = broken_rule(typed, latest or latest_moment(), nul_free)
    return typed if problem is None else problem


def to_rows(
    obj: Any, nul_free: bool = False, latest: datetime | None = None
) -> OrderRows | RecordError:
    """Validate one record (see `check_record`) and turn it into the loader's rows."""
    typed = _typed(obj)
    if type(typed) is RecordError:
        return typed
    return rows_or_broken_rule(typed, latest or latest_moment(), nul_free)


def _typed(obj: Any) -> OrderRecord | RecordError:
    """The value in the contract's types, or why its types do not fit."""
    if type(obj) is OrderRecord:
        return obj
    if not isinstance(obj, dict):
        return RecordError("(record)", f"must be a JSON object, not {_json_kind(obj)}")
    try:
        return _convert(obj, OrderRecord)
    except msgspec.ValidationError as exc:
        return explain(exc, obj)


def _json_kind(obj: Any) -> str:
    return {
        list: "an array",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
        type(None): "null",
    }.get(type(obj), type(obj).__name__)
