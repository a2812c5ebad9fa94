"""Screenshots of the web area for the docs, made in Debian's headless Chromium.

    python -m dunning.web.screenshots --database-url sqlite:///.dunning/demo/dunning.db

Serves the app on 127.0.0.1 and a free port, logs in with an operator token made for the
purpose (revoked at the end), and writes settings.png, board.png and case.png of the merchant
with the most cases. Run `dunning demo` first for a database with every state.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from dunning.db import session_scope
from dunning.models.schema import Action, Case
from dunning.web.app import create_app
from dunning.web.tokens import create_token, revoke_token

CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _subjects(url: str) -> tuple[str, int]:
    """The merchant with the most cases and one of its cases with reminders sent."""
    with session_scope(url) as s:
        merchant = s.execute(
            select(Case.merchant_id, func.count())
            .group_by(Case.merchant_id)
            .order_by(func.count().desc(), Case.merchant_id)
        ).first()
        if merchant is None:
            raise SystemExit("no cases in this database; run `dunning demo` first")
        case_id = s.scalar(
            select(Case.case_id)
            .join(Action, Action.case_id == Case.case_id)
            .where(Case.merchant_id == merchant[0], Action.step == "reminder_2")
            .order_by(Case.case_id)
            .limit(1)
        ) or s.scalar(select(func.min(Case.case_id)).where(Case.merchant_id == merchant[0]))
    return merchant[0], int(case_id)


def take(url: str, out: Path, width: int = 1280) -> list[Path]:
    import uvicorn
    from playwright.sync_api import sync_playwright

    merchant, case_id = _subjects(url)
    token_id, secret = create_token(url, merchant_id=None, operator="docs", created_by="docs")
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(url),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    out.mkdir(parents=True, exist_ok=True)
    shots = {
        "settings.png": f"/?merchant={merchant}",
        "board.png": f"/cases?merchant={merchant}&limit=15",
        "case.png": f"/cases/{case_id}?merchant={merchant}",
    }
    written = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": width, "height": 800}, locale="de-DE")
            page.goto(f"{base}/login")
            page.get_by_label("Zugangsschlüssel").fill(secret)
            page.get_by_role("button", name="Anmelden").click()
            page.wait_for_url(f"{base}/")
            for name, path in shots.items():
                page.goto(base + path)
                page.screenshot(path=str(out / name), full_page=True)
                written.append(out / name)
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        revoke_token(url, token_id)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="sqlite:///.dunning/demo/dunning.db")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    for path in take(args.database_url, args.out):
        print(path)


if __name__ == "__main__":
    main()
