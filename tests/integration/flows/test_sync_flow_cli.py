"""The `sync_orders` flow under Prefect, and `dunning sync` / `dunning generate` as a user
runs them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from dunning.db import get_engine
from dunning.models.schema import LastDataUpdate, SyncWatermark
from dunning.sample import generate_orders, write_jsonl
from dunning.tasks.sync_run import count_rows

AS_OF = datetime(2026, 11, 26, 6, tzinfo=UTC)


def test_flow_syncs_in_a_few_task_runs(migrated_db, tmp_path, prefect_harness, monkeypatch):
    from prefect.client.orchestration import get_client

    from dunning.config import get_settings
    from dunning.flows.sync import sync_orders

    path = tmp_path / "shop.jsonl.gz"
    write_jsonl(generate_orders(1500, 6, seed=4, as_of=AS_OF), path)
    monkeypatch.setenv("DUNNING_DATABASE_URL", migrated_db)  # configuration, not parameters
    monkeypatch.setenv("DUNNING_SOURCE_URL", str(path))
    get_settings.cache_clear()
    state = sync_orders(
        as_of=AS_OF,
        batch_size=200,
        batches_per_task=3,
        return_state=True,
    )
    first = state.result()
    assert (first["read"], first["inserted"], first["quarantined"]) == (1500, 1500, 0)
    again_state = sync_orders(as_of=AS_OF, batch_size=200, return_state=True)
    again = again_state.result()
    assert again["inserted"] == 0 and again["read"] == again["unchanged"] + again["skipped"]
    with get_engine(migrated_db).connect() as conn:
        assert count_rows(conn)["orders"] == 1500
        assert conn.scalar(select(SyncWatermark.watermark)) is not None
        assert conn.scalar(select(LastDataUpdate.name)).startswith("sync:file:")

    import asyncio

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def task_names() -> list[str]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
                )
            )
            return [r.name for r in runs]

    async def progress(run_state) -> list[float]:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterType

        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["progress"])),
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[run_state.state_details.flow_run_id])
                ),
            )
            return [a.data for a in found]

    # a progress bar for the sync of three chunks, ending full; none for one chunk
    assert asyncio.run(progress(state)) == [100.0]
    assert asyncio.run(progress(again_state)) == []

    names = asyncio.run(task_names())
    # 1500 / 200 = 8 batches, 3 per task run: 3 runs of sync-batches, never one per order
    assert sum(n.startswith("sync-batches") for n in names) == 3
    assert len(names) == 5  # plus plan-sync and finish-sync


def test_cli_generate_then_sync_prints_progress_and_counts(migrated_db, tmp_path, cli):
    out = tmp_path / "shop.jsonl.gz"
    made = cli(
        "generate",
        "--orders",
        "3000",
        "--merchants",
        "12",
        "--seed",
        "5",
        "--out",
        str(out),
        "--as-of",
        "2026-11-26T06:00:00+00:00",
    )
    assert made.returncode == 0, made.stderr
    assert "Wrote 3,000 orders of 12 merchants" in made.stdout
    env = {"DUNNING_DATABASE_URL": migrated_db, "DUNNING_BATCH_SIZE": "500"}
    shown = cli("sync", "--source", f"file:{out}", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "100.0%" in shown.stdout and "3,000 read" in shown.stdout  # the progress bar
    for column in ("read", "inserted", "updated", "unchanged", "quarantined"):
        assert column in shown.stdout
    assert "counts: read=3000 inserted=3000 updated=0 unchanged=0 quarantined=0" in shown.stdout
    again = cli("sync", "--source", f"file:{out}", "--full", env=env)
    assert again.returncode == 0, again.stderr
    assert "(full reload)" in again.stdout
    assert "counts: read=3000 inserted=0 updated=0 unchanged=3000" in again.stdout
    missing = cli("sync", "--source", str(tmp_path / "nope.jsonl"), env=env)
    assert missing.returncode == 2 and "source file not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_scheme = cli("sync", "--source", "ftp://example.org/x", env=env)
    assert bad_scheme.returncode == 2 and "unsupported source" in bad_scheme.stderr
