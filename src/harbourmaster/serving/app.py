"""The replica's HTTP face: a lean ASGI app (no per-request pydantic, orjson in and out).

Routes: Open Inference Protocol v2 (``/v2/health/live``, ``/v2/health/ready``,
``/v2/models/{project}``, ``/v2/models/{project}/infer``), the plain JSON
``/v1/projects/{project}/predict`` and ``/feedback``, and ``/metrics``. Bad input
is a 4xx with a JSON body naming the problem, never a 500.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from harbourmaster.bundle.predictor import Batch
from harbourmaster.core.log_layout import UNROUTED
from harbourmaster.errors import HarbourmasterError
from harbourmaster.services.feedback import parse_feedback
from harbourmaster.serving.capture import Captured, now_us
from harbourmaster.serving.guard import RefusalTally, TokenGuard
from harbourmaster.serving.lanes import Saturated
from harbourmaster.serving.replica import Replica
from harbourmaster.serving.router import ModelUnavailable, Outcome, ProjectRoute, pick_side, run_chain

log = logging.getLogger("harbourmaster.serving")

JSON = [(b"content-type", b"application/json")]
SHADOW_SECONDS = 30.0  # longest a shadow copy is waited for
RETRY_AFTER = b"1"  # seconds, on a 503 because the project's lanes were full
CONCURRENCY_HINT = "deployment option concurrency.max_in_flight / .max_queued"
_DATATYPES = {"b": "BOOL", "i": "INT64", "u": "UINT64", "f": "FP64"}


# The reason logged (and the ``code``) of a refusal, by status, when the error has no code of its own.
REFUSAL_CODES = {
    400: "malformed",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    422: "invalid_input",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}
RECENT_ANSWERS = 100_000  # request ids remembered for feedback checks without reading the log


class HttpError(Exception):
    def __init__(
        self, status: int, error: str, hint: str | None = None, *, counted: bool = False, **extra: Any
    ) -> None:
        super().__init__(error)
        self.status, self.body = status, {"error": error, **({"hint": hint} if hint else {}), **extra}
        self.counted = counted  # already counted and logged where it was raised
        self.retry_after = False  # a 503 the client may retry in RETRY_AFTER seconds


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
        # Request ids: 32 hex digits, a random per-process prefix and a counter (unique across
        # replicas and workers without a urandom syscall and a UUID object per request).
        self._id_prefix = os.urandom(8).hex()
        self._id_counter = itertools.count(1)
        self.guard = TokenGuard(self._check_token, self._audit_refusals)
        # Recently answered request ids -> rows (dict and deque operations are atomic: no lock on the hot path).
        self._answered: dict[str, int] = {}
        self._answered_order: deque[str] = deque()
        self._background: set[asyncio.Task[None]] = set()

    def _remember(self, request_id: str, rows: int) -> None:
        self._answered[request_id] = rows
        order = self._answered_order
        order.append(request_id)
        if len(order) > RECENT_ANSWERS:
            self._answered.pop(order.popleft(), None)

    def _recent(self, request_ids: set[str]) -> dict[str, int]:
        answered = self._answered
        return {rid: answered[rid] for rid in request_ids if rid in answered}

    def _check_token(self, token: str, address: str | None) -> str:
        return self.replica.control_plane.check_token(token, address)

    def _audit_refusals(self, tallies: list[RefusalTally]) -> None:
        """One audit entry per token hash and reason per interval, through the control plane (guard's thread)."""
        self.replica.control_plane.report_refusals(
            [
                {
                    "actor": tally.actor,
                    "addresses": sorted(tally.addresses),
                    "reason": tally.reason,
                    "status": tally.status,
                    "token_sha256": tally.token_sha256,
                    "count": tally.count,
                    "tokens": tally.tokens,
                    "first": tally.first.isoformat(),
                    "last": tally.last.isoformat(),
                }
                for tally in tallies
            ]
        )

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
                        await _in_daemon_thread(self.replica.start)
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.get_running_loop().run_in_executor(None, self.guard.close)
                if self.manage_lifespan:
                    await self.drain(SHADOW_SECONDS)
                    await _in_daemon_thread(self.replica.stop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- dispatch ------------------------------------------------------------------

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        request_id = _header(scope, b"x-request-id") or self._request_id()
        headers = [*JSON, (b"x-request-id", request_id.encode("latin-1"))]
        path, method = scope["path"], scope["method"]
        parts = path.strip("/").split("/")
        status: int
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
                await self._feedback_call(scope, receive, send, parts[2], headers, started)
                return
            if path == "/v1/status":
                capture = self.replica.capture
                body = {
                    "replica": self.replica.id,
                    "environment": self.replica.environment,
                    "ready": self.replica.table.ready,
                    "loaded": self.replica.loaded(),
                    "refused": self.replica.refused(),
                    "capture": {
                        "queue": capture.depth,
                        "pending": capture.pending,
                        "spilled": capture.spilled,
                        "dropped": capture.dropped,
                        "written": capture.written,
                    },
                }
                await _send_json(send, 200, body, headers)
                return
            raise HttpError(404, f"no route {method} {path}", "see docs/serving.md for the endpoints")
        except HttpError as exc:
            status, body, counted = exc.status, {**exc.body, "request_id": request_id}, exc.counted
            code = REFUSAL_CODES.get(status, "refused")
            if exc.retry_after:
                headers = [*headers, (b"retry-after", RETRY_AFTER)]
        except HarbourmasterError as exc:
            status, code, counted = exc.http_status, exc.code, False
            body = {"error": exc.message, "hint": exc.hint, "code": exc.code, "request_id": request_id}
        except Exception:
            log.exception("unexpected error answering %s %s (request %s)", method, path, request_id)
            status, code, counted = 500, "internal", False
            body = {"error": "internal error", "hint": "the replica's log has the details", "request_id": request_id}
        if not counted:
            self._refused(parts, status, code, request_id, started)
        await _send_json(send, status, body, headers)

    def _refused(self, parts: list[str], status: int, code: str, request_id: str, started: float) -> None:
        """Count a refused request and, on a project's prediction endpoints, log it (no inputs)."""
        elapsed = time.perf_counter() - started
        endpoint = _endpoint(parts)
        if endpoint is None:
            self.replica.metrics.refused("", status, elapsed)
            return
        project = parts[2]
        if project not in self.replica.table.routes and project not in self.replica.failures:
            project = UNROUTED  # a name chosen by the caller is neither a label nor a partition
        self.replica.metrics.refused(project, status, elapsed, path="feedback" if endpoint == "feedback" else "refused")
        if endpoint != "feedback":
            self.replica.capture.submit(
                Captured(now_us(), request_id, project, None, "refused", code, status, elapsed * 1000.0, [], None, None)
            )

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
        return _parse(await self._read(scope, receive))

    async def _read(self, scope: dict[str, Any], receive: Any) -> bytes:
        """The request's body (413 past ``max_body_bytes``)."""
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
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _authorize(self, scope: dict[str, Any]) -> str:
        """The caller's name when their token may predict here; raises 401/403 otherwise."""
        authorization = _header(scope, b"authorization") or ""
        token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else None
        token = token or _header(scope, b"x-harbourmaster-token")
        client = scope.get("client")
        try:
            # Grants are cached by the control plane client, refusals by the guard; a miss runs off the loop.
            return str(await self.guard.authorize(token, client[0] if client else None))
        except HarbourmasterError as exc:
            if not token:
                raise HttpError(
                    401,
                    f"{self.replica.environment} is guarded: a token is required",
                    "send Authorization: Bearer <token>",
                ) from None
            raise exc from None

    # -- predictions ----------------------------------------------------------------

    async def _predict(
        self, scope: dict[str, Any], receive: Any, send: Any, project: str, request_id: str, started: float, *, v2: bool
    ) -> None:
        replica = self.replica
        if replica.guarded:
            await self._authorize(scope)
        route = self._route(project)
        raw = await self._read(scope, receive)
        body = _parse(raw)
        if v2:
            records = _records_from_v2(body, route.validator.names)
            single = False
        else:
            records, single = _records_from_v1(body, route.validator.names)
        if not records:
            raise HttpError(422, "the request has no records", "send at least one record")
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
        # A single record sent as one line and validated as is: the spool keeps the client's bytes.
        raw_records = b"[" + raw + b"]" if single and matrix is not None and _one_line_object(raw) else None
        side = pick_side(route, records, _header(scope, b"x-sticky-key"))
        batch = predictor.batch(records, matrix)
        try:
            outcome = await run_chain(route, batch, side, replica.metrics)
        except ModelUnavailable as exc:
            elapsed = time.perf_counter() - started
            replica.metrics.observe(project, "none", "unavailable", 503, elapsed)
            if route.challenger is not None and route.challenger_mode == "canary":
                replica.metrics.canary(project, side, "failed")
            self._capture(route, batch, None, request_id, elapsed, 503, exc, plain=matrix is not None, raw=raw_records)
            hint = "configure a failover version or fallback rules: harbourmaster fallback --help"
            if exc.saturated:
                hint = f"retry later, or raise the project's concurrency limits ({CONCURRENCY_HINT})"
            error = HttpError(503, f"{project} could not answer: {exc.detail}", hint, counted=True, reason=exc.reason)
            error.retry_after = exc.saturated
            raise error from None
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
        # Spooled before the answer leaves (at least once); a shadowed request is spooled when its shadow answers.
        if route.challenger is not None and route.challenger_mode == "shadow":
            self._shadow(route, batch, outcome, request_id, elapsed, matrix is not None)
        else:
            self._capture(
                route, batch, outcome, request_id, elapsed, 200, None, plain=matrix is not None, raw=raw_records
            )
        replica.metrics.observe(project, version if version is not None else "rules", outcome.path, 200, elapsed)
        if route.challenger is not None and route.challenger_mode == "canary":
            replica.metrics.canary(project, side, "answered" if outcome.path == side else "fallback")
        if outcome.path == "champion" and version is not None:
            replica.count_answer(project, version)
        await _send_json(send, 200, payload, headers)

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
        *,
        plain: bool = False,
        raw: bytes | None = None,
    ) -> None:
        """Spool the request and queue it (one line and one tuple; Arrow happens in the writer thread).

        ``plain``: the batch's matrix is the records' values exactly (validated in one pass), so the writer
        may log the inputs from it; ``raw``: the records' JSON text as the client sent it (spooled as is)."""
        if status == 200:
            self._remember(request_id, len(batch.records))
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
                batch.matrix if plain else None,
                batch.columns if plain else None,
                raw,
            )
        )

    def _shadow(
        self, route: ProjectRoute, batch: Batch, outcome: Outcome, request_id: str, elapsed: float, plain: bool
    ) -> None:
        """The challenger scores a copy in its own lane after the answer left; both are logged together."""
        call = self._shadow_call(route, batch, outcome, request_id, elapsed, plain)
        task = asyncio.get_running_loop().create_task(call)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _shadow_call(
        self, route: ProjectRoute, batch: Batch, outcome: Outcome, request_id: str, elapsed: float, plain: bool
    ) -> None:
        challenger, metrics = route.challenger, self.replica.metrics
        assert challenger is not None
        answers = None
        try:
            call = challenger.lane.run(challenger.predictor.predict, batch)
            budget = route.options.latency_budget_ms
            # A shadow may take longer than the budget (nobody waits for it), but not forever.
            labels, proba = await asyncio.wait_for(call, max(SHADOW_SECONDS, (budget or 0) / 1000.0))
            answers = challenger.predictor.answers(labels, proba)[0]
        except Saturated:  # the challenger's lane is full: the champion's answer is logged alone
            metrics.shadow_dropped.inc()
            self._capture(route, batch, outcome, request_id, elapsed, 200, None, plain=plain)
            return
        except Exception as exc:
            number = challenger.predictor.number
            log.warning("%s: shadow v%s failed on request %s: %r", route.project, number, request_id, exc)
            metrics.shadow_failed(route.project)
        shadow = (challenger.predictor.number, answers)
        self._capture(route, batch, outcome, request_id, elapsed, 200, None, shadow, plain=plain)

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) for background work (shadow copies) so that it is logged before the replica stops."""
        if self._background:
            await asyncio.wait(list(self._background), timeout=timeout)

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
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        project: str,
        headers: list[tuple[bytes, bytes]],
        started: float,
    ) -> None:
        caller = await self._authorize(scope) if self.replica.guarded else None
        route = self._route(project)
        body = await self._body(scope, receive)
        items = parse_feedback(body)
        champion = route.champion.predictor.classes
        classes = None if champion is None else {c for link in route.predictors() for c in link.predictor.classes or ()}
        # The replica vouches for what it answered lately; older requests are looked up in the log.
        answered = self._recent({request_id for request_id, _, _ in items})
        record = functools.partial(self.replica.control_plane.feedback, classes=classes, answered=answered)
        loop = asyncio.get_running_loop()
        count = await loop.run_in_executor(None, record, project, items, caller)
        self.replica.metrics.observe(project, "none", "feedback", 200, time.perf_counter() - started)
        await _send_json(send, 200, {"stored": count}, headers)


# -- wire formats -------------------------------------------------------------------


def _parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, f"malformed JSON: {exc}", "send a JSON body") from None


def _one_line_object(raw: bytes) -> bool:
    """A body that parsed as an object can be one spool line as is: no newline, no surrounding whitespace."""
    return raw[:1] == b"{" and raw[-1:] == b"}" and b"\n" not in raw


def _endpoint(parts: list[str]) -> str | None:
    """``predict``, ``infer`` or ``feedback`` for a project's endpoints (their refusals are counted per project)."""
    if len(parts) != 4:
        return None
    if parts[0] == "v1" and parts[1] == "projects" and parts[3] in ("predict", "feedback"):
        return parts[3]
    if parts[0] == "v2" and parts[1] == "models" and parts[3] == "infer":
        return "infer"
    return None


# Other servers' request bodies, recognised so that one sent here gets one error naming the shape this endpoint
# takes (rather than "missing" for every schema field and "unknown field" for the wrapper).
FOREIGN_SHAPES = {
    "instances": "TensorFlow Serving's (and Vertex AI's) request shape",
    "inputs": "TensorFlow Serving's columnar request shape (Open Inference Protocol requests: /v2/models/.../infer)",
    "dataframe_split": "MLflow's request shape",
    "dataframe_records": "MLflow's request shape",
}


def _records_from_v1(body: Any, names: list[str]) -> tuple[list[Any], bool]:
    if isinstance(body, dict) and len(body) == 1:
        (key,) = body
        if key in FOREIGN_SHAPES and key not in names:
            fields = ", ".join(f'"{name}": ...' for name in names[:2]) + (", ..." if len(names) > 2 else "")
            raise HttpError(
                422,
                f'{{"{key}": ...}} is {FOREIGN_SHAPES[key]}; this endpoint takes one record (an object of the '
                'schema\'s fields) or a list of them as {"records": [...]}',
                f'send {{{fields}}} or {{"records": [{{{fields}}}, ...]}} (see docs/serving.md)',
            )
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
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            errors.append({"field": f"inputs[{index}]", "error": "needs a 'name' (a string) and a 'data' list"})
        elif not isinstance(tensor.get("data"), list):
            errors.append({"field": f"inputs[{index}].data", "error": "must be a list"})
        elif not _is_shape(tensor.get("shape", [])):
            errors.append({"field": f"inputs[{index}].shape", "error": "must be a list of non-negative integers"})
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


def _is_shape(shape: Any) -> bool:
    return shape is None or (
        isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    )


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


async def _in_daemon_thread(function: Callable[[], Any]) -> Any:
    """``function()`` in a daemon thread (never the loop's default executor, which the process waits for at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def target() -> None:
        try:
            result = function()
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=target, name="hm-lifespan", daemon=True).start()
    return await future


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
