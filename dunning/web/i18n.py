"""The pages' language: German (the seed's words) by default, English by `?lang=en` (kept in
a cookie), else by the browser's `Accept-Language`. The German text is the key; a label
without an English entry stays German."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request

LANGS = ("de", "en")
DEFAULT_LANG = "de"
LANG_COOKIE = "dunning_lang"

EN: dict[str, str] = {
    # frame and login
    "Hauptnavigation": "Main navigation",
    "Einstellungen": "Settings",
    "Anzeige-Tafel": "Case board",
    "Betreiber": "Operator",
    "Händler": "Merchant",
    "wechseln": "change",
    "Abmelden": "Log out",
    "Anmelden": "Log in",
    "Zugangsschlüssel": "Access token",
    "Sprache": "Language",
    "Händler wählen": "Choose a merchant",
    "Alle Fälle aller Händler": "All cases of all merchants",
    "Fälle": "Cases",
    "Nicht gefunden": "Not found",
    "Fehler": "Error",
    "Zur Startseite": "To the start page",
    # board
    "alle Händler": "all merchants",
    "Status": "Status",
    "Alle Status": "All states",
    "In Bearbeitung": "In progress",
    "Von": "From",
    "Bis": "To",
    "Betrag ab": "Amount from",
    "Betrag bis": "Amount to",
    "Bestell-ID, Vor- oder Nachname": "Order id, first or last name",
    "Filtern": "Filter",
    "Alle Perioden, alle Fälle": "All periods, all cases",
    "CSV herunterladen": "Download CSV",
    "CSV (RFC 4180, Komma)": "CSV (RFC 4180, comma)",
    "Fall": "Case",
    "angezeigt": "shown",
    "Aktionen": "Actions",
    "Name": "Name",
    "Bestell-ID": "Order id",
    "Zahlungsplan": "Payment plan",
    "Inkasso-Status": "Collection status",
    "Tage überfällig": "Days overdue",
    "Ausstehend": "Outstanding",
    "Bestellbetrag": "Order amount",
    "Bezahlt": "Paid",
    "Stornokosten": "Cancellation costs",
    "Mahnoption": "Dunning option",
    "Eröffnet": "Opened",
    "Keine Fälle für diese Filter.": "No cases for these filters.",
    "Seiten": "Pages",
    "« Erste Seite": "« First page",
    "‹ Vorherige Seite": "‹ Previous page",
    "Nächste Seite ›": "Next page ›",
    # settings
    "Einstellungen in deinem Inkasso": "Settings of your collection",
    "Letzte Datenaktualisierung": "Last data update",
    "Anzeige-Tafel aktualisiert": "Case board refreshed",
    "Datenabgleich": "Data sync",
    "Zeitzone": "Time zone",
    "Noch keine Datenaktualisierung.": "No data update yet.",
    "Automatische Übergabe": "Automatic handover",
    "Offene Forderungen automatisch an das Inkasso übergeben": (
        "Hand open claims over to collection automatically"
    ),
    "Rückbuchungen automatisch an das Inkasso senden": (
        "Send chargebacks to collection automatically"
    ),
    "Speichern": "Save",
    "Wichtig: vollständige Adresse": "Important: complete address",
    "Änderungsverlauf": "Change history",
    "Wann": "When",
    "Wer": "Who",
    "Änderung": "Change",
    "Zur Anzeige-Tafel →": "To the case board →",
    # case and confirmation
    "Bestellung": "Order",
    "← Anzeige-Tafel": "← Case board",
    "Kunde": "Customer",
    "Art": "Kind",
    "Nächster Schritt": "Next step",
    "Blockiert": "Blocked",
    "Wartet": "Waiting",
    "Abschluss": "Closed",
    "Forderung": "Claim",
    "Hauptforderung": "Principal",
    "+ Gebühren": "+ fees",
    "+ Zinsen": "+ interest",
    "+ Stornokosten": "+ cancellation costs",
    "− bezahlt (Shop)": "− paid (shop)",
    "− bezahlt (Inkassopartner)": "− paid (collection partner)",
    "Posten": "Items",
    "Kosten": "Costs",
    "Inkassopartner": "Collection partner",
    "Forderungs-ID": "Claim id",
    "Übergeben": "Handed over",
    "Gesendete Mahnungen": "Reminders sent",
    "Noch keine.": "None yet.",
    "Verlauf": "History",
    "Nach": "To",
    "Grund": "Reason",
    "Noch kein Eintrag.": "No entry yet.",
    "Grund (wird im Verlauf gespeichert)": "Reason (kept in the history)",
    "bestätigen": "confirm",
    "Zurück": "Back",
    # states, plans, options, actions
    "Warten auf Freigabe": "Awaiting approval",
    "Mahnlauf geplant": "Dunning scheduled",
    "Geblockt": "Blocked",
    "1. Mahnung": "1st reminder",
    "2. Mahnung": "2nd reminder",
    "Beim Inkassopartner": "With the collection partner",
    "Kündigungsandrohung": "Termination notice",
    "Kündigung manuell ausführen": "Cancel the order manually",
    "Gerichtliches Mahnverfahren": "Court dunning procedure",
    "Gekündigt": "Order cancelled",
    "Pausiert": "On hold",
    "Abgebrochen": "Cancelled",
    "Uneinbringlich": "Uncollectible",
    "Einmalzahlung": "One-time payment",
    "Ratenzahlung": "Installments",
    "Abonnement": "Subscription",
    "Mahnprozess starten": "Start dunning",
    "Abbrechen": "Cancel",
    "Pausieren": "Hold",
    "Fortsetzen": "Resume",
    "Option a: Mahnwesen + Inkasso + gerichtliches Mahnverfahren": (
        "Option a: dunning + collection + court dunning procedure"
    ),
    "Option b: Mahnwesen + Inkasso + Kündigung": "Option b: dunning + collection + cancellation",
    "a (Gericht)": "a (court)",
    "b (Kündigung)": "b (cancellation)",
}


def _accepted(header: str) -> str | None:
    """The best of LANGS in an Accept-Language header (q-values honoured), or None."""
    best: tuple[float, str] | None = None
    for part in header.split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        code = tag.strip().lower()[:2]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if code in LANGS and q > 0 and (best is None or q > best[0]):
            best = (q, code)
    return best[1] if best else None


def chosen_lang(request: Request) -> str:
    """`?lang=`, else the cookie, else Accept-Language, else German."""
    for given in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if given in LANGS:
            return given
    return _accepted(request.headers.get("accept-language", "")) or DEFAULT_LANG


def translator(lang: str) -> Callable[[str], str]:
    if lang == "en":
        return lambda text: EN.get(text, text)
    return lambda text: text


def switch_url(request: Request, lang: str) -> str:
    """The current page in the other language."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    from urllib.parse import urlencode

    return f"{request.url.path}?{urlencode([*params, ('lang', lang)])}"
