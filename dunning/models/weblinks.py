"""Links into `dunning web` (issue 17) when DUNNING_WEB_URL names where it is served: the
board filtered as a BoardFilter says (`/cases?…`), its CSV (`/cases.csv?…`), one case
(`/cases/{id}`). Pure: the same query parameters the pages read."""

from __future__ import annotations

from urllib.parse import urlencode

from dunning.models.board import BoardFilter


def board_params(f: BoardFilter) -> dict[str, str]:
    """The URL parameters of the board for `f` (an operator's view names the merchant)."""
    params = {
        "merchant": f.merchant_id,
        "status": f.status,
        "from": f.opened_from.isoformat() if f.opened_from else None,
        "to": f.opened_to.isoformat() if f.opened_to else None,
        "min_amount": f"{f.min_amount}" if f.min_amount is not None else None,
        "max_amount": f"{f.max_amount}" if f.max_amount is not None else None,
        "search": f.search,
    }
    return {k: v for k, v in params.items() if v is not None}


def _join(base: str, path: str, params: dict[str, str]) -> str:
    query = urlencode(params)
    return f"{base.rstrip('/')}{path}{'?' + query if query else ''}"


def board_url(base: str, f: BoardFilter) -> str:
    return _join(base, "/cases", board_params(f))


def board_csv_url(base: str, f: BoardFilter, dialect: str = "excel-de") -> str:
    params = board_params(f)
    if dialect != "excel-de":
        params["dialect"] = dialect
    return _join(base, "/cases.csv", params)


def case_url(base: str, case_id: int, merchant_id: str | None = None) -> str:
    """One case; `merchant` keeps an operator in that merchant's view (a merchant's own
    login ignores it)."""
    return _join(base, f"/cases/{case_id}", {"merchant": merchant_id} if merchant_id else {})
