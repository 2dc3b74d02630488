"""The replica's HTTP face: a lean ASGI app (no per-request pydantic, orjson in and out).

Routes: Open Inference Protocol v2 (``/v2/health/live``, ``/v2/health/ready``,
``/v2/models/{project}``, ``/v2/models/{project}/infer``), the plain JSON
``/v1/projects/{project}/predict`` and ``/feedback``, and ``/metrics``. Bad input
is a 4xx with a JSON body naming the problem, never a 500.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from typing import Any

import orjson

from harbourmaster.bundle.predictor import Batch
from harbourmaster.errors import HarbourmasterError
from harbourmaster.services.feedback import parse_feedback
from harbourmaster.serving.capture import Captured, now_us
from harbourmaster.serving.replica import Replica
from harbourmaster.serving.router import ModelUnavailable, Outcome, ProjectRoute, pick_side, run_chain

log = logging.getLogger("harbourmaster.serving")

JSON = [(b"content-type", b"application/json")]
_DATATYPES = {"b": "BOOL", "i": "INT64", "u": "UINT64", "f": "FP64"}


class HttpError(Exception):
    def __init__(self, status: int, error: str, hint: str | None = None, **extra: Any) -> None:
        super().__init__(error)
        self.status, self.body = status, {"error": error, **({"hint": hint} if hint else {}), **extra}


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class ServingApp:
    """ASGI callable over one ``Replica``; starts and stops it with the server's lifespan."""

    def __init__(self, replica: Replica, *, manage_lifespan: bool = True) -> None:
        self.replica = replica
        self.manage_lifespan = manage_lifespan
        self._feedback = replica.platform.feedback
        # Request ids: 32 hex digits, a random per-process prefix and a counter (unique across
        # replicas and workers without a urandom syscall and a UUID object per request).
        self._id_prefix = os.urandom(8).hex()
        self._id_counter = itertools.count(1)

    def _request_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_counter):016x}"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.manage_lifespan:
                        await asyncio.get_running_loop().run_in_executor(None, self.replica.start)
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.manage_lifespan:
                    await asyncio.get_running_loop().run_in_executor(None, self.replica.stop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- dispatch ------------------------------------------------------------------

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        request_id = _header(scope, b"x-request-id") or self._request_id()
        headers = [*JSON, (b"x-request-id", request_id.encode("latin-1"))]
        path, method = scope["path"], scope["method"]
        parts = path.strip("/").split("/")
        try:
            if len(parts) == 4 and parts[0] == "v1" and parts[1] == "projects" and parts[3] == "predict":
                self._method(method, "POST")
                await self._predict(scope, receive, send, parts[2], request_id, started, v2=False)
                return
            if len(parts) == 4 and parts[0] == "v2" and parts[1] == "models" and parts[3] == "infer":
                self._method(method, "POST")
                await self._predict(scope, receive, send, parts[2], request_id, started, v2=True)
                return
            if path == "/metrics":
                body = self.replica.metrics.render()
                await _send(send, 200, body, [(b"content-type", b"text/plain; version=0.0.4")])
                return
            if path == "/v2/health/live":
                await _send_json(send, 200, {"live": True}, headers)
                return
            if path == "/v2/health/ready":
                ready = self.replica.table.ready
                await _send_json(send, 200 if ready else 503, {"ready": ready}, headers)
                return
            if path in ("/v2", "/v2/"):
                await _send_json(send, 200, {"name": "harbourmaster", "version": "1", "extensions": []}, headers)
                return
            if len(parts) == 3 and parts[:2] == ["v2", "models"]:
                await _send_json(send, 200, self._metadata(self._route(parts[2])), headers)
                return
            if len(parts) == 4 and parts[:2] == ["v2", "models"] and parts[3] == "ready":
                route = self.replica.table.routes.get(parts[2])
                await _send_json(send, 200 if route else 503, {"name": parts[2], "ready": bool(route)}, headers)
                return
            if len(parts) == 4 and parts[:2] == ["v1", "projects"] and parts[3] == "feedback":
                self._method(method, "POST")
                await self._feedback_call(scope, receive, send, parts[2], headers)
                return
            if path == "/v1/status":
                body = {
                    "replica": self.replica.id,
                    "environment": self.replica.environment,
                    "ready": self.replica.table.ready,
                    "loaded": self.replica.loaded(),
                    "refused": {p: f["error"] for p, f in self.replica.failures.items()},
                    "capture": {"queue": self.replica.capture.depth, "dropped": self.replica.capture.dropped},
                }
                await _send_json(send, 200, body, headers)
                return
            raise HttpError(404, f"no route {method} {path}", "see docs/serving.md for the endpoints")
        except HttpError as exc:
            await _send_json(send, exc.status, {**exc.body, "request_id": request_id}, headers)
        except HarbourmasterError as exc:
            body = {"error": exc.message, "hint": exc.hint, "request_id": request_id}
            await _send_json(send, exc.http_status, body, headers)
        except Exception:
            log.exception("unexpected error answering %s %s (request %s)", method, path, request_id)
            body = {"error": "internal error", "hint": "the replica's log has the details", "request_id": request_id}
            await _send_json(send, 500, body, headers)

    @staticmethod
    def _method(method: str, allowed: str) -> None:
        if method != allowed:
            raise HttpError(405, f"method {method} is not allowed here", f"use {allowed}")

    def _route(self, project: str) -> ProjectRoute:
        route = self.replica.table.routes.get(project)
        if route is None:
            failure = self.replica.failures.get(project)
            if failure:
                raise HttpError(
                    503, f"{project} failed to load in this replica: {failure['error']}", "fix and redeploy"
                )
            raise HttpError(
                404,
                f"{project} is not served in {self.replica.environment}",
                f"deploy it: harbourmaster deploy {project} VERSION --env {self.replica.environment}",
            )
        return route

    async def _body(self, scope: dict[str, Any], receive: Any) -> Any:
        limit = self.replica.options.max_body_bytes
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise HttpError(
                413, f"request body of {length} bytes is larger than {limit}", "send fewer records per call"
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise HttpError(413, f"request body is larger than {limit} bytes", "send fewer records per call")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, f"malformed JSON: {exc}", "send a JSON body") from None

    def _authorize(self, scope: dict[str, Any]) -> None:
        authorization = _header(scope, b"authorization") or ""
        token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else None
        token = token or _header(scope, b"x-harbourmaster-token")
        if not token:
            raise HttpError(
                401, f"{self.replica.environment} is guarded: a token is required", "send Authorization: Bearer <token>"
            )
        client = scope.get("client")
        # Cached per token by the access service, so the request path reads the database only on a miss.
        self.replica.platform.access.authorize_prediction(
            token, self.replica.environment, client[0] if client else None
        )

    # -- predictions ----------------------------------------------------------------

    async def _predict(
        self, scope: dict[str, Any], receive: Any, send: Any, project: str, request_id: str, started: float, *, v2: bool
    ) -> None:
        replica = self.replica
        if replica.guarded:
            self._authorize(scope)
        route = self._route(project)
        body = await self._body(scope, receive)
        if v2:
            records = _records_from_v2(body, route.validator.names)
            single = False
        else:
            records, single = _records_from_v1(body)
        if len(records) > route.options.max_records:
            raise HttpError(413, f"{len(records)} records in one call", f"send at most {route.options.max_records}")
        validator, predictor = route.validator, route.champion.predictor
        # Numeric schemas: one check over the whole request, giving the matrix the model is fed; the
        # per-field check (which names every problem) runs only when that one is not conclusive.
        matrix = validator.plain_matrix(records) if validator.names == predictor.columns else None
        if matrix is None:
            errors = validator.check(records)
            if errors:
                raise HttpError(
                    422, f"{len(errors)} invalid field(s)", "fix the fields listed in 'errors'", errors=errors
                )
            records = validator.clean(records)
        side = pick_side(route, records, _header(scope, b"x-sticky-key"))
        batch = predictor.batch(records, matrix)
        try:
            outcome = await run_chain(route, batch, side, replica.metrics, replica.pool)
        except ModelUnavailable as exc:
            elapsed = time.perf_counter() - started
            replica.metrics.observe(project, "none", "unavailable", 503, elapsed)
            self._capture(route, batch, None, request_id, elapsed, 503, exc)
            raise HttpError(
                503,
                f"{project} could not answer: {exc.detail}",
                "configure a failover version or fallback rules: harbourmaster fallback --help",
                reason=exc.reason,
            ) from None
        elapsed = time.perf_counter() - started
        version = outcome.version
        headers = [
            *JSON,
            (b"x-request-id", request_id.encode("latin-1")),
            (b"x-model-version", str(version).encode()),
            (b"x-serving-path", outcome.path.encode()),
        ]
        if v2:
            payload = _v2_response(project, request_id, outcome, route)
        elif single:
            payload = {
                "prediction": outcome.predictions[0],
                "probabilities": outcome.probabilities[0] if outcome.probabilities else None,
                "version": version,
                "path": outcome.path,
                "request_id": request_id,
            }
        else:
            payload = {
                "predictions": outcome.predictions,
                "probabilities": outcome.probabilities,
                "version": version,
                "path": outcome.path,
                "request_id": request_id,
            }
        if outcome.reason:
            payload_key = "parameters" if v2 else "fallback"
            payload.setdefault(payload_key, {}).update({"reason": outcome.reason, "detail": outcome.detail})
        await _send_json(send, 200, payload, headers)
        replica.metrics.observe(project, version if version is not None else "rules", outcome.path, 200, elapsed)
        if route.challenger is not None and route.challenger_mode == "shadow":
            self._shadow(route, batch, outcome, request_id, elapsed)
        else:
            self._capture(route, batch, outcome, request_id, elapsed, 200, None)

    def _capture(
        self,
        route: ProjectRoute,
        batch: Batch,
        outcome: Outcome | None,
        request_id: str,
        elapsed: float,
        status: int,
        failure: ModelUnavailable | None,
        shadow: tuple[int, list[Any] | None] | None = None,
    ) -> None:
        """Hand the request to the capture queue (one tuple; JSON and Arrow happen in the writer thread)."""
        self.replica.capture.submit(
            Captured(
                now_us(),
                request_id,
                route.project,
                outcome.version if outcome else None,
                outcome.path if outcome else "unavailable",
                outcome.reason if outcome else failure.reason if failure else None,
                status,
                elapsed * 1000.0,
                batch.records,
                outcome.predictions if outcome else None,
                outcome.probabilities if outcome else None,
                shadow[0] if shadow else None,
                shadow[1] if shadow else None,
            )
        )

    def _shadow(self, route: ProjectRoute, batch: Batch, outcome: Outcome, request_id: str, elapsed: float) -> None:
        replica = self.replica
        if replica.shadow_pending >= 1000:
            replica.metrics.shadow_dropped.inc()
            self._capture(route, batch, outcome, request_id, elapsed, 200, None)
            return
        replica.shadow_pending += 1
        challenger = route.challenger
        assert challenger is not None

        def work() -> None:
            try:
                try:
                    labels, proba = challenger.predictor.predict(batch)
                    answers = challenger.predictor.answers(labels, proba)[0]
                except Exception:
                    answers = None
                shadow = (challenger.predictor.number, answers)
                self._capture(route, batch, outcome, request_id, elapsed, 200, None, shadow)
            finally:
                replica.shadow_pending -= 1

        try:
            replica.shadow_pool.submit(work)
        except RuntimeError:  # shutting down: log the champion's answer alone
            replica.shadow_pending -= 1
            self._capture(route, batch, outcome, request_id, elapsed, 200, None)

    def _metadata(self, route: ProjectRoute) -> dict[str, Any]:
        predictor = route.champion.predictor
        columns = predictor.bundle.manifest.input_schema.get("columns") or []
        return {
            "name": route.project,
            "versions": [str(link.predictor.number) for link in route.predictors()],
            "platform": f"harbourmaster/{predictor.engine}",
            "inputs": [{"name": c["name"], "datatype": _schema_datatype(c["dtype"]), "shape": [-1]} for c in columns],
            "outputs": [{"name": "predict", "datatype": "BYTES", "shape": [-1]}],
            "parameters": {
                "environment": self.replica.environment,
                "revision": route.revision,
                "champion": predictor.number,
                "challenger": route.challenger.predictor.number if route.challenger else None,
                "challenger_mode": route.challenger_mode,
                "failover": route.failover.predictor.number if route.failover else None,
                "engine": predictor.engine,
                "engine_reason": predictor.engine_reason,  # why ONNX was not taken (None when it was)
                "engine_details": predictor.engine_info,
            },
        }

    async def _feedback_call(
        self, scope: dict[str, Any], receive: Any, send: Any, project: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        if self.replica.guarded:
            self._authorize(scope)
        self._route(project)
        body = await self._body(scope, receive)
        items = parse_feedback(body)
        loop = asyncio.get_running_loop()
        count = await loop.run_in_executor(
            None, self._feedback.record, self.replica.actor, project, self.replica.environment, items
        )
        await _send_json(send, 200, {"stored": count}, headers)


# -- wire formats -------------------------------------------------------------------


def _records_from_v1(body: Any) -> tuple[list[Any], bool]:
    if isinstance(body, dict) and "records" in body and len(body) == 1:
        records = body["records"]
        if not isinstance(records, list) or not records:
            raise HttpError(422, "'records' must be a non-empty list of objects", '{"records": [{...}, ...]}')
        return records, False
    if isinstance(body, dict):
        return [body], True
    raise HttpError(422, 'expected one record (an object) or {"records": [...]}', "see docs/serving.md")


def _records_from_v2(body: Any, names: list[str]) -> list[dict[str, Any]]:
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise HttpError(422, "an inference request needs a non-empty 'inputs' list", "Open Inference Protocol v2")
    errors = []
    for index, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or "name" not in tensor or not isinstance(tensor.get("data"), list):
            errors.append({"field": f"inputs[{index}]", "error": "needs 'name' and a 'data' list"})
    if errors:
        raise HttpError(422, "invalid input tensors", "each input: {name, shape, datatype, data}", errors=errors)
    if len(inputs) == 1 and inputs[0]["name"] not in names:  # one 2-D tensor, columns in schema order
        tensor = inputs[0]
        data = tensor["data"]
        shape = tensor.get("shape") or []
        rows = data if data and isinstance(data[0], list) else None
        if rows is None and len(shape) == 2 and shape[1] == len(names) and len(data) == shape[0] * shape[1]:
            rows = [data[i * shape[1] : (i + 1) * shape[1]] for i in range(shape[0])]
        if rows is None or any(not isinstance(r, list) or len(r) != len(names) for r in rows):
            raise HttpError(
                422,
                f"input {tensor['name']!r} is not a column and not a [n, {len(names)}] matrix",
                "send one tensor per column (named as in the schema) or one [n, columns] tensor",
            )
        return [dict(zip(names, row, strict=True)) for row in rows]
    lengths = {len(tensor["data"]) for tensor in inputs}
    if len(lengths) != 1:
        raise HttpError(422, "input tensors have different lengths", "send the same number of values per column")
    n = lengths.pop()
    columns = [(tensor["name"], tensor["data"]) for tensor in inputs]
    return [{name: data[i] for name, data in columns} for i in range(n)]


def _v2_response(project: str, request_id: str, outcome: Outcome, route: ProjectRoute) -> dict[str, Any]:
    predictions = outcome.predictions
    sample = next((p for p in predictions if p is not None), None)
    if isinstance(sample, bool):
        datatype = "BOOL"
    elif isinstance(sample, int):
        datatype = "INT64"
    elif isinstance(sample, float):
        datatype = "FP64"
    else:
        datatype = "BYTES"
    outputs = [{"name": "predict", "shape": [len(predictions)], "datatype": datatype, "data": predictions}]
    if outcome.probabilities:
        keys = list(outcome.probabilities[0])
        flat = [row[k] for row in outcome.probabilities for k in keys]
        outputs.append(
            {
                "name": "predict_proba",
                "shape": [len(predictions), len(keys)],
                "datatype": "FP64",
                "data": flat,
                "parameters": {"classes": keys},
            }
        )
    return {
        "model_name": project,
        "model_version": None if outcome.version is None else str(outcome.version),
        "id": request_id,
        "outputs": outputs,
        "parameters": {"path": outcome.path, "request_id": request_id, "version": outcome.version},
    }


def _schema_datatype(dtype: str) -> str:
    return {"integer": "INT64", "float": "FP64", "boolean": "BOOL"}.get(dtype, "BYTES")


async def _send(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Any, status: int, payload: Any, headers: list[tuple[bytes, bytes]]) -> None:
    await _send(send, status, orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), headers)
