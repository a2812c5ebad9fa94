"""The stamp and address checks accept exactly what the contract's former patterns did
(msgspec applied them while decoding; they are the oracles here)."""

from __future__ import annotations

import random
import re

import pytest

from dunning.models.records import is_email, is_timestamp_form

STAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})"
)
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[^\W_](?:(?:[^\W_]|-){0,61}[^\W_])?"
EMAIL = re.compile(
    rf"(?=.{{3,254}}$)(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+"
    r"(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})"
)

STAMPS = [
    "2026-01-31T09:30:00+01:00", "2026-01-31T09:30:00Z", "2026-01-31 09:30Z",
    "2026-01-31T09:30:00.123456-0130", "2026-01-31T09:30:00.1234567Z", "2026-01-31t09:30Z",
    "2026-01-31T09:30:00z", "2026-01-31T09:30:00", "2026-01-31T09Z", "20260131T093000Z",
    "2026-01-31T09:30:00+01", "2026-01-31T09:30:00+01:00\n", "２０２６-01-31T09:30Z",
    "2026-01-31T09:30:00,5Z", "2026-01-31T09:30:00.Z", "2026-W05-6T09:30Z", "\ud800", "",
]  # fmt: skip
ADDRESSES = [
    "erika@example.org", "a@b.de", "x@müller.de", "a@xn--mller-kva.de", "a..b@x.org",
    ".a@x.org", "a.@x.org", "a@-x.org", "a@x-.org", "a@x.o", "a@x.org.", "a@x_y.org", "a@x",
    "a b@x.org", "a@x.org\n", "\na@x.org", '"a"@x.org', "a@[127.0.0.1]", "a@b@x.org", "@x.org",
    "ä@x.org", "a@x.org, b@y.org", "a@x.123", "a@1.de", "a@x.xn--p1ai", "a@x.xn--", "\ud800@x.de",
    "a" * 64 + "@x.org", "a" * 65 + "@x.org", "a@" + ("b" * 61 + ".") * 4 + "org",
    "a@" + ("b" * 62 + ".") * 4 + "org", "a@" + "b" * 63 + ".org", "a@" + "b" * 64 + ".org",
]  # fmt: skip


def _mutants(seeds: list[str], alphabet: str, n: int) -> list[str]:
    rng = random.Random(11)
    out = list(seeds)
    for _ in range(n):
        s = list(rng.choice(seeds))
        for _ in range(rng.choice((1, 1, 2, 3))):
            i = rng.randrange(len(s) + 1)
            op = rng.random()
            if op < 0.4 and i < len(s):
                s[i] = rng.choice(alphabet)
            elif op < 0.7:
                s.insert(i, rng.choice(alphabet))
            elif i < len(s):
                del s[i]
        out.append("".join(s))
    return out


# (check, its former pattern, fixed cases, the alphabet of mutations, bounds on how many
# mutants pass: both sides exercised)
FORMATS = {
    "stamp": (is_timestamp_form, STAMP, STAMPS, "0123456789-:T tZz+.,\n\x00é", (1_000, 19_000)),
    "address": (is_email, EMAIL, ADDRESSES, "ab.-@_ ü1,<>\"'\n\x00", (2_000, 18_000)),
}


@pytest.mark.parametrize(
    ("check", "pattern", "value"),
    [(c, p, v) for c, p, values, _, _ in FORMATS.values() for v in values],
)
def test_fixed_cases(check, pattern, value):
    assert check(value) is (pattern.fullmatch(value) is not None)


@pytest.mark.parametrize("name", FORMATS)
def test_formats_agree_on_mutants(name):
    check, pattern, values, alphabet, (low, high) = FORMATS[name]
    mutants = _mutants(values[:4], alphabet, 20_000)
    assert [check(m) for m in mutants] == [bool(pattern.fullmatch(m)) for m in mutants]
    assert low < sum(map(check, mutants)) < high
