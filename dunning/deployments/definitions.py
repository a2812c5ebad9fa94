"""The deployments as `prefect.yaml` declares them: one source for `deploy` and `serve`.

The file ships inside the package (the repo root links to it for `prefect deploy`), and its
entrypoints are module paths, so `dunning serve` works from an installed wheel in any folder
and each flow module is imported once, under its own name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PREFECT_YAML = Path(__file__).with_name("prefect.yaml")
WORK_POOL = "dunning"
# Every deployment of the pipeline carries this tag; the automations watch it.
PIPELINE_TAG = "pipeline"


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

        return load_flow_from_entrypoint(self.entrypoint)


def deployment_specs(path: Path | None = None) -> list[DeploymentSpec]:
    data = yaml.safe_load((path or PREFECT_YAML).read_text(encoding="utf-8"))
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
