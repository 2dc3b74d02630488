"""The demo's serving chapter: deploy to dev, serve real requests, refuse bad input, fall back, flush the log."""

from __future__ import annotations

from typing import Any

import httpx
import pandas as pd

from harbourmaster.config import Settings
from harbourmaster.services.sandbox import open_embedded
from harbourmaster.serving.replica import ReplicaOptions
from harbourmaster.serving.server import ServerThread
from harbourmaster.store.prediction_log import PredictionLog


def _wait(server: ServerThread, project: str, revision: int) -> None:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        route = server.replica.table.routes.get(project)
        if route is not None and route.revision >= revision:
            return
        time.sleep(0.05)
    raise RuntimeError("the replica did not pick up the deployment")


def run_serving_chapter(story: Any, settings: Settings, project: str, version: int, features: pd.DataFrame) -> None:
    """Deploy ``version`` to dev, serve it on loopback and show the data plane at work."""
    story.step(f"Deploy v{version} to dev and serve it (no restart, every answer captured)")
    platform, actor = open_embedded(settings, purpose="the demo's serving chapter")
    try:
        state = platform.deployments.deploy(actor, project, version, "dev")
        story.say(f"harbourmaster deploy {project} {version} --env dev  -> desired state revision {state.revision}")
        server = ServerThread(platform, "dev", ReplicaOptions(poll_seconds=0.2, capture_flush_seconds=0.5)).start()
        url = f"{server.url}/v1/projects/{project}/predict"
        story.say(f"replica {server.replica.id} serving dev on {server.url}")
        rows = [{k: float(v) for k, v in row.items()} for row in features.head(3).to_dict(orient="records")]
        with httpx.Client(timeout=30) as client:
            for row in rows:
                answer = client.post(url, json=row)
                body = answer.json()
                took = answer.elapsed.total_seconds() * 1000
                story.say(
                    f"POST predict -> {answer.status_code}: malignant={body['prediction']} "
                    f"(p={body['probabilities']['1']:.3f}) by v{body['version']} via {body['path']} in {took:.1f} ms"
                )
            bad = dict(rows[0], **{"mean area": "large"})
            bad.pop("mean radius")
            answer = client.post(url, json=bad)
            problems = "; ".join(f"{e['field']}: {e['error']}" for e in answer.json()["errors"])
            story.say(f"bad input -> {answer.status_code}: {problems}")

            story.step("The champion cannot be trusted on this input: the fallback answers")
            platform.deployments.set_options(actor, project, "dev", {"humility": {"enabled": True, "margin": 0.1}})
            state = platform.deployments.set_fallback(
                actor,
                project,
                "dev",
                fallback={
                    "rules": [{"when": {"feature": "worst area", "op": ">", "value": 880}, "output": 1}],
                    "default": 0,
                },
            )
            _wait(server, project, state.revision)
            story.say("humility rule on (inputs beyond the training range skip the model); rule table as last resort")
            odd = dict(rows[0], **{"worst area": 25000.0})
            body = client.post(url, json=odd).json()
            story.say(
                f"worst area 25000 (trained on at most ~4250) -> malignant={body['prediction']} via "
                f"[bold]{body['path']}[/] (reason: {body['fallback']['reason']}: {body['fallback']['detail']})"
            )
            body = client.post(url, json=rows[0]).json()
            story.say(f"a normal input still goes to v{body['version']} via {body['path']}")
            platform.deployments.set_options(actor, project, "dev", {})
            platform.deployments.set_fallback(actor, project, "dev", replace=True)
        server.stop()
        story.say("replica stopped gracefully: in-flight requests finished, the prediction log flushed")
        count = PredictionLog(platform.artifacts).count("dev", project)
        story.say(f"DuckDB over the Parquet prediction log: {count} prediction rows for {project} in dev")
    finally:
        platform.close()
