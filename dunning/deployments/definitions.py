"""The deployments as `prefect.yaml` declares them: one source for `deploy` and `serve`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORK_POOL = "dunning"
PIPELINE_DEPLOYMENT = "dunning-run"


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    entrypoint: str
    description: str = ""
    tags: list[str] = field(default_factory=list)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    concurrency_limit: dict[str, Any] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    def load_flow(self):
        from prefect.flows import load_flow_from_entrypoint

        return load_flow_from_entrypoint(str(PROJECT_ROOT / self.entrypoint))


def prefect_yaml() -> Path:
    for folder in (Path.cwd(), PROJECT_ROOT):
        if (folder / "prefect.yaml").is_file():
            return folder / "prefect.yaml"
    raise FileNotFoundError("prefect.yaml not found in the working folder or the project root")


def deployment_specs(path: Path | None = None) -> list[DeploymentSpec]:
    data = yaml.safe_load((path or prefect_yaml()).read_text(encoding="utf-8"))
    return [
        DeploymentSpec(
            name=d["name"],
            entrypoint=d["entrypoint"],
            description=d.get("description", ""),
            tags=list(d.get("tags") or []),
            schedules=list(d.get("schedules") or []),
            concurrency_limit=d.get("concurrency_limit"),
            parameters=dict(d.get("parameters") or {}),
        )
        for d in data["deployments"]
    ]
