"""The hard prerequisite of SPEC §2: a complete customer address. Pure: no database.

Complete = first name, last name, street, house number, postal code valid for the country
(DE 5 digits, AT 4, CH 4, others non-empty), city, ISO 3166-1 alpha-2 country code.
A case whose order lacks it is `blocked` with the fields named (`AddressCheck.reason`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REQUIRED_FIELDS: tuple[str, ...] = (
    "first_name",
    "last_name",
    "street",
    "house_number",
    "zip_code",
    "city",
    "country_code",
)

# Countries whose postal code is a fixed number of digits.
POSTAL_CODE_DIGITS: dict[str, int] = {"DE": 5, "AT": 4, "CH": 4}
POSTAL_CODE_PATTERNS: dict[str, re.Pattern[str]] = {
    country: re.compile(rf"\d{{{digits}}}") for country, digits in POSTAL_CODE_DIGITS.items()
}

# ISO 3166-1 alpha-2, officially assigned codes.
ISO_COUNTRIES = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
    """.split()  # noqa: SIM905
)


@dataclass(frozen=True)
class AddressCheck:
    missing: tuple[str, ...] = ()
    invalid: tuple[str, ...] = ()
    country: str | None = None

    @property
    def complete(self) -> bool:
        return not self.missing and not self.invalid

    @property
    def fields(self) -> tuple[str, ...]:
        """Every field that is missing or invalid, in address order."""
        bad = set(self.missing) | set(self.invalid)
        return tuple(f for f in REQUIRED_FIELDS if f in bad)

    @property
    def reason(self) -> str | None:
        """One line for `blocked_reason`, naming the fields; None when complete."""
        if self.complete:
            return None
        parts = []
        if self.missing:
            parts.append("missing " + ", ".join(self.missing))
        for name in self.invalid:
            if name == "zip_code":
                parts.append(f"invalid zip_code for {self.country}")
            else:
                parts.append(f"invalid {name}")
        return "address incomplete: " + "; ".join(parts)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def check_address(buyer: Mapping[str, Any]) -> AddressCheck:
    """Which required fields are missing (empty/blank) or invalid (postal code, country)."""
    missing = tuple(f for f in REQUIRED_FIELDS if not _text(buyer.get(f)))
    invalid: list[str] = []
    country = _text(buyer.get("country_code")).upper() or None
    if country is not None and country not in ISO_COUNTRIES:
        invalid.append("country_code")
    zip_code = _text(buyer.get("zip_code"))
    pattern = POSTAL_CODE_PATTERNS.get(country or "")
    if zip_code and pattern is not None and not pattern.fullmatch(zip_code):
        invalid.append("zip_code")
    return AddressCheck(missing=missing, invalid=tuple(invalid), country=country)


def certainly_complete_sql(buyer: str = "b") -> str:
    """A PostgreSQL condition on a buyers row that holds only where `check_address` finds
    the address complete: every required field holds a letter or digit (so it is not blank
    however it is stripped), the country is an assigned code as stored, and the postal code
    of a country in POSTAL_CODE_DIGITS is exactly that many ASCII digits. It may doubt a
    complete address (then `check_address` decides); tests check it never passes an
    incomplete one."""
    has_text = [
        f"{buyer}.{field} ~ '[[:alnum:]]'"
        for field in REQUIRED_FIELDS
        if field not in ("zip_code", "country_code")
    ]
    countries = ", ".join(f"'{code}'" for code in sorted(ISO_COUNTRIES))
    postal = " ".join(
        f"WHEN '{country}' THEN {buyer}.zip_code ~ '^[0-9]{{{digits}}}$'"
        for country, digits in POSTAL_CODE_DIGITS.items()
    )
    return " AND ".join(
        [
            *has_text,
            f"{buyer}.country_code IN ({countries})",
            f"(CASE {buyer}.country_code {postal} ELSE {buyer}.zip_code ~ '[[:alnum:]]' END)",
        ]
    )
