"""Screenshots of the Prefect UI for the operators' docs, made in Debian's headless Chromium.

    python -m dunning.deployments.screenshots [--out docs/screenshots]

Starts a Prefect server of its own (temporary home, free port), bootstraps it, deploys
every deployment, runs the pipeline on a small sample shop for three days (three cases
started by an operator; on the third day the partner is down, so that run ends Degraded),
and writes prefect-summary.png (the run's summary artifact), prefect-needs-human.png and
prefect-merchant-settings.png (the form of the merchant-settings deployment), 1280 px wide.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from dunning.deployments import prefect_server

CHROMIUM = "/usr/bin/chromium"
BIN = prefect_server.BIN
PREFECT_YAML = Path(__file__).with_name("prefect.yaml")


def _run(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _sample_runs(env: dict[str, str], work: Path) -> None:
    """Three days of the pipeline; three cases started; the partner down on the last."""
    from dunning.servers.partner_api import start as start_partner

    dunning = str(BIN / "dunning")
    orders = work / "orders.jsonl"
    _run([dunning, "generate", "--orders", "300", "--merchants", "3", "--seed", "7",
          "--out", str(orders), "--as-of", "2026-11-26"], env)  # fmt: skip
    partner = start_partner()
    env["DUNNING_PARTNER_URL"] = partner.url
    _run([dunning, "run", "--as-of", "2026-11-26T06:00:00+01:00"], env)
    cases = _run([dunning, "cases", "--status", "awaiting_approval", "--format", "json"], env)
    import json

    for row in json.loads(cases)[:3]:
        _run([dunning, "case", "start", str(row["case_id"]), "--reason", "checked by phone",
              "--operator", "docs", "--as-of", "2026-11-26T07:00:00+01:00"], env)  # fmt: skip
    for day in (27, 28, 29):
        if day == 29:
            partner.stop()
        _run([dunning, "run", "--as-of", f"2026-11-{day}T06:00:00+01:00"], env)


def _pages(api: str) -> dict[str, str]:
    """The UI paths to photograph: the newest summary and needs-human artifacts, the form."""
    from dunning.flows.artifacts import NEEDS_HUMAN_KEY, SUMMARY_KEY

    def newest(key: str) -> str:
        body = {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1}
        (artifact,) = httpx.post(f"{api}/artifacts/filter", json=body, timeout=10).json()
        return f"/artifacts/artifact/{artifact['id']}"

    body = {"deployments": {"name": {"any_": ["merchant-settings"]}}}
    (deployment,) = httpx.post(f"{api}/deployments/filter", json=body, timeout=10).json()
    return {
        "prefect-summary.png": newest(SUMMARY_KEY),
        "prefect-needs-human.png": newest(NEEDS_HUMAN_KEY),
        "prefect-merchant-settings.png": f"/deployments/deployment/{deployment['id']}/run",
    }


def take(out: Path, width: int = 1280) -> list[Path]:
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="dunning-screens-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DUNNING_"))}
    env.update(
        PREFECT_HOME=str(work / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        DUNNING_DATABASE_URL=f"sqlite:///{work / 'dunning.db'}",
        DUNNING_SOURCE_URL=str(work / "orders.jsonl"),
        DUNNING_SMTP_URL=f"file:{work / 'mail'}",
        DUNNING_DEFAULT_REMINDER_2_DAYS="1",  # every step a day apart: three days suffice
        DUNNING_DEFAULT_HANDOVER_DAYS="1",
    )
    (work / "prefect").mkdir()
    server, env = prefect_server.start(work / "prefect", env)
    os.environ.update({k: env[k] for k in ("PREFECT_API_URL", "DUNNING_DATABASE_URL")})
    written = []
    try:
        _run([str(BIN / "dunning"), "bootstrap"], env)
        deploy = [str(BIN / "prefect"), "--no-prompt", "deploy", "--all"]
        _run([*deploy, "--prefect-file", str(PREFECT_YAML)], env)
        # no hourly run as of now in the middle of the sample's days
        _run([str(BIN / "prefect"), "--no-prompt", "deployment", "schedule", "pause", "--all"], env)
        _sample_runs(env, work)
        ui = env["PREFECT_API_URL"].removesuffix("/api")
        out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            for name, path in _pages(env["PREFECT_API_URL"]).items():
                # the UI scrolls inside its own pane: a tall window shows the whole page
                height = 900 if "needs-human" in name else 1900
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(ui + path)
                page.wait_for_load_state("networkidle")
                time.sleep(1.5)  # the UI renders markdown and forms after its data arrives
                page.screenshot(path=str(out / name), full_page=True)
                written.append(out / name)
            browser.close()
    finally:
        prefect_server.stop(server)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    for path in take(args.out):
        print(path)


if __name__ == "__main__":
    main()
