"""The complete-address rule (SPEC §2) without a database."""

import pytest

from dunning.models.address import check_address
from tests.factories import address


def test_full_german_address_is_complete():
    check = check_address(address())
    assert check.complete and check.reason is None and check.fields == ()


@pytest.mark.parametrize(
    "field",
    ["first_name", "last_name", "street", "house_number", "zip_code", "city", "country_code"],
)
@pytest.mark.parametrize("empty", [None, "", "   "])
def test_each_missing_field_is_named(field, empty):
    check = check_address(address(**{field: empty}))
    assert not check.complete
    assert check.fields == (field,)
    assert f"missing {field}" in check.reason


@pytest.mark.parametrize(
    ("country", "zip_code", "ok"),
    [
        ("DE", "10115", True),
        ("DE", "1011", False),
        ("DE", "101155", False),
        ("DE", "1O115", False),
        ("AT", "1010", True),
        ("AT", "10100", False),
        ("CH", "8001", True),
        ("CH", "800", False),
        ("FR", "75001", True),
        ("NL", "1012 AB", True),
        ("de", "10115", True),
    ],
)
def test_postal_code_valid_for_the_country(country, zip_code, ok):
    check = check_address(address(country_code=country, zip_code=zip_code))
    assert check.complete is ok
    if not ok:
        assert check.fields == ("zip_code",)
        assert f"invalid zip_code for {country.upper()}" in check.reason


def test_unknown_country_code_is_invalid():
    check = check_address(address(country_code="XX"))
    assert check.fields == ("country_code",)
    assert check.reason == "address incomplete: invalid country_code"


def test_several_problems_named_in_address_order():
    check = check_address(address(house_number=None, city="", zip_code="123"))
    assert check.fields == ("house_number", "zip_code", "city")
    assert check.reason == (
        "address incomplete: missing house_number, city; invalid zip_code for DE"
    )


def test_no_buyer_at_all_names_everything():
    assert len(check_address({}).missing) == 7
