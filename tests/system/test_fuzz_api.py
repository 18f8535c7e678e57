"""Every operation of openapi.yaml fuzzed with schemathesis against the app in process,
each example sent with a key of each scope (admin, ingest, storefront, marketer): no
answer is a 5xx, and every answer is one the schema documents (status code, content
type, body, headers), errors as problem+json.

Each operation is one Hypothesis test on the suite's database fixtures (a connection
rolled back afterwards), with schema-valid and schema-violating inputs. Examples are
derandomized, so a run is repeatable. FUZZ_EXAMPLES sets the examples per operation
(default 20; a longer pass: 250). With FUZZ_REPORT=path.jsonl nothing fails: every
failing request (operation, key, input, the app's frames) and each operation's counts
of answers are written there, for a report."""

from __future__ import annotations

import json
import os
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from service import errors
from service.app import create_app
from service.auth.service import Scope, create_key, revoke_key
from service.events.platforms.shopify import sign_shopify
from service.events.platforms.stripe import sign_stripe
from service.events.platforms.woocommerce import sign_woocommerce
from service.events.signatures import sign_standard_webhooks
from tests import support
from tests.support.webhooks import FIXTURES, fixture

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = schemathesis.openapi.from_path(str(ROOT / "openapi.yaml"))
OPERATIONS = {op.label: op for op in (r.ok() for r in SCHEMA.get_all_operations())}
SCOPES = ("admin", "ingest", "storefront", "marketer")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
REPORT = os.environ.get("FUZZ_REPORT")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
PROBLEM = "application/problem+json"
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=10),  # per example (four requests): a hang fails too
    derandomize=True,
    database=None,
    # A failure is reported as found, not shrunk: shrinking replays requests by the
    # hundred, past the suite's time budget.
    phases=[Phase.explicit, Phase.generate],
    report_multiple_bugs=False,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def keys(engine: Engine) -> Iterator[dict[str, dict[str, str]]]:
    """A key of each scope as an Authorization header, committed (the decision
    endpoint checks keys on connections of its own), revoked afterwards."""
    with Session(engine) as session, session.begin():
        made = {s: create_key(session, name=f"fuzz-{s}", scopes=[Scope(s)]) for s in SCOPES}
        prefixes = [new.record.prefix for new in made.values()]
    yield {s: {"Authorization": f"Bearer {new.key}"} for s, new in made.items()}
    with Session(engine) as session, session.begin():
        for prefix in prefixes:
            revoke_key(session, prefix=prefix)


def describe(case: Case, body: Any = None) -> str:
    """The request, for a failure's message."""
    body = case.body if body is None else body
    shown = "" if isinstance(body, NotSet) else f" body={body!r:.400}"
    return f"{case.method} {case.formatted_path} query={case.query}{shown}"


@pytest.fixture
def app_client(connection: Connection) -> Iterator[TestClient]:
    """The suite's client, but an exception the app does not handle reaches the test
    with its traceback (the app's own 500 answers are checked as answers)."""
    with TestClient(create_app(), raise_server_exceptions=True) as c:
        yield c


def send(client: TestClient, case: Case, headers: dict[str, str]) -> httpx.Response:
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    body: dict[str, Any] = {}
    if "json" in kwargs:
        body["content"] = json.dumps(kwargs["json"]).encode()
    data = kwargs.get("data")
    if isinstance(data, str | bytes):
        body["content"] = data
    elif data is not None:
        body["data"] = data
    if kwargs.get("files"):
        body["files"] = kwargs["files"]
    return client.request(
        kwargs["method"],
        kwargs["url"],
        params=kwargs.get("params"),
        headers=kwargs.get("headers"),
        **body,
    )


def check(case: Case, response: httpx.Response) -> None:
    """Raises when the answer is a 5xx or breaks the schema."""
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        assert response.headers.get("content-type", "").startswith(PROBLEM), response.headers
        problem = response.json()
        assert problem.get("status") == response.status_code, problem
        assert problem.get("title"), problem
    case.validate_response(response, checks=CHECKS)


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_operation(
    label: str,
    app_client: TestClient,
    keys: dict[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    operation = OPERATIONS[label]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )
    report = Report(label) if REPORT else None
    if report is not None:  # the app's 500s: their exceptions, as logged
        monkeypatch.setattr(errors, "log", report)

    @SETTINGS
    @given(case=cases)
    def fuzz(case: Case) -> None:
        for scope, auth in keys.items():
            try:
                response = send(app_client, case, auth)
                check(case, response)
            except (Exception, BaseExceptionGroup) as exc:
                if report is None:
                    exc.add_note(f"with the {scope} key: {describe(case)}")
                    raise
                report.failed(case, scope, exc)
            else:
                if report is not None:
                    report.passed(response)

    fuzz()
    if report is not None:
        report.write()


def _frames(exc: BaseException) -> list[str]:
    return [
        f"{f.filename.removeprefix(str(ROOT) + '/')}:{f.lineno} {f.name}"
        for f in traceback.extract_tb(exc.__traceback__)
    ]


class Report:
    """FUZZ_REPORT: every failing request of one operation, and the counts."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.counts: Counter[str] = Counter()
        self.rows: list[dict[str, Any]] = []
        self.logged: tuple[BaseException, list[str]] | None = None

    def error(self, event: str, **fields: Any) -> None:  # stands in for the app's log
        exc = fields.get("exc_info")
        if isinstance(exc, BaseException):  # its frames now: they are gone once handled
            self.logged = (exc, _frames(exc))

    def warning(self, event: str, **fields: Any) -> None:
        pass

    def passed(self, response: httpx.Response) -> None:
        self.logged = None
        self.counts["requests"] += 1
        self.counts[f"status {response.status_code}"] += 1

    def failed(self, case: Case, scope: str, exc: BaseException) -> None:
        self.counts["requests"] += 1
        if hasattr(exc, "exceptions"):  # schemathesis' failure group
            kind = "schema: " + "; ".join(sorted({f.title for f in exc.exceptions}))
        elif not isinstance(exc, AssertionError):
            kind = "5xx unhandled"
        elif str(exc)[:1] == "5":
            kind = "5xx"
        else:
            kind = "not problem+json"
        frames = _frames(exc)
        if self.logged is not None and kind.startswith("5xx"):
            (exc, frames), self.logged = self.logged, None
        if kind.startswith("5xx"):
            kind += f" {type(exc).__name__}"
        self.counts[kind] += 1
        ours = [f for f in frames if f.startswith("service/")]
        self.rows.append(
            {
                "operation": self.label,
                "scope": scope,
                "kind": kind,
                "error": f"{type(exc).__name__}: {str(exc)[:600]}",
                "frames": ours[-4:] or frames[-3:],
                "method": case.method,
                "path": case.formatted_path,
                "query": case.query,
                "headers": {k: v for k, v in (case.headers or {}).items() if k != "Authorization"},
                "body": repr(case.body)[:600],
            }
        )

    def write(self) -> None:
        assert REPORT
        with open(REPORT, "a") as out:
            for row in self.rows:
                out.write(json.dumps(row, default=repr) + "\n")
            out.write(json.dumps({"operation": self.label, "counts": self.counts}) + "\n")


# --- bodies the schema does not describe -------------------------------------------------
# The Segment-compatible calls and the webhooks read their body themselves, so the schema
# gives it no shape and the fuzzer above sends none. Here: the suite's real payloads with
# a few values replaced by hostile ones (NUL, lone surrogates, NaN, huge numbers, far
# dates, deep nesting, wrong types), signed as each platform signs, and then resolved
# onto profiles as the worker does: an acknowledged event must not break resolution.

DEEP, HUGE = "\ue000deep\ue000", "\ue000huge\ue000"  # placeholders for raw JSON text
HOSTILE = st.one_of(
    st.text(st.characters(exclude_categories=[]), max_size=12),  # NUL, lone surrogates
    st.sampled_from(
        ["\x00", "a\x00b", "\ud800", "NaN", "Infinity", "-1e30", "9999-12-31T23:59:59Z"]
    ),
    st.sampled_from(["0001-01-01T00:00:00Z", "", "  ", DEEP, HUGE]),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.none(), max_size=2),
)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        yield (*path, key)
        if isinstance(child, dict | list) and child:
            yield from _leaves(child, (*path, key))


@st.composite
def hostile_body(draw: st.DrawFn, payloads: list[dict[str, Any]]) -> bytes:
    payload = json.loads(json.dumps(draw(st.sampled_from(payloads))))
    paths = list(_leaves(payload))
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3)):
        node = payload
        try:
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = draw(HOSTILE)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed the path
    text = json.dumps(payload, ensure_ascii=True, allow_nan=True)
    depth = draw(st.sampled_from([10, 1200, 5000]))
    text = text.replace(json.dumps(DEEP), "[" * depth + "]" * depth)
    return text.replace(json.dumps(HUGE), "1e400").encode()


def _fixtures(prefix: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.stem.removeprefix(prefix), fixture(path.name))
        for path in sorted(FIXTURES.glob(f"{prefix}*.json"))
    ]


SEGMENT_EVENTS = [payload for _, payload in _fixtures("segment_")]
SIGNED = {
    "POST /v1/webhooks/shopify": _fixtures("shopify_"),
    "POST /v1/webhooks/woocommerce": _fixtures("woocommerce_"),
    "POST /v1/webhooks/stripe": _fixtures("stripe_"),
    "POST /v1/webhooks/{source}": _fixtures("bigcommerce_") + _fixtures("standard_webhooks_"),
}
TRACKING = ["batch", "track", "identify", "page", "screen", "group", "alias"]


def _signed_headers(label: str, name: str, body: bytes) -> tuple[str, dict[str, str]]:
    """The path and headers a platform sends with `body`."""
    now, delivery = int(time.time()), uuid.uuid4().hex
    headers = {"Content-Type": "application/json"}
    if label.endswith("shopify"):
        headers["X-Shopify-Topic"] = name.replace("_alt_rest_fixture", "").replace("_", "/", 1)
        headers["X-Shopify-Hmac-Sha256"] = sign_shopify(body, "shpss_test_secret")
        headers["X-Shopify-Event-Id"] = delivery
        return "/v1/webhooks/shopify", headers
    if label.endswith("woocommerce"):
        topic = name.replace("_with_refunds", "").replace("_", ".", 1)
        headers["X-WC-Webhook-Topic"] = topic
        headers["X-WC-Webhook-Signature"] = sign_woocommerce(body, "wc_test_secret")
        headers["X-WC-Webhook-Delivery-ID"] = delivery
        return "/v1/webhooks/woocommerce", headers
    if label.endswith("stripe"):
        headers["Stripe-Signature"] = sign_stripe(body, "whsec_test_secret", now)
        return "/v1/webhooks/stripe", headers
    headers["webhook-id"], headers["webhook-timestamp"] = delivery, str(now)
    headers["webhook-signature"] = sign_standard_webhooks(
        body, msg_id=delivery, timestamp=now, secret="test_client_secret"
    )
    return "/v1/webhooks/bigcommerce", headers


@pytest.mark.parametrize(
    "label", [f"POST /v1/{call}" for call in TRACKING] + sorted(SIGNED), ids=str
)
def test_hostile_body(
    label: str,
    app_client: TestClient,
    keys: dict[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    operation = OPERATIONS[label]
    ingest = keys["ingest"]
    report = Report(label) if REPORT else None
    if report is not None:
        monkeypatch.setattr(errors, "log", report)
    if label in SIGNED:
        named = SIGNED[label]
        requests = st.sampled_from(range(len(named))).flatmap(
            lambda i: hostile_body([named[i][1]]).map(
                lambda body, i=i: (*_signed_headers(label, named[i][0], body), body)
            )
        )
    else:
        call = label.rsplit("/", 1)[1]
        events = hostile_body(SEGMENT_EVENTS)
        if call == "batch":
            events = st.lists(events, min_size=1, max_size=3).map(
                lambda bodies: b'{"batch": [' + b", ".join(bodies) + b"]}"
            )
        requests = events.map(
            lambda body: (f"/v1/{call}", {**ingest, "Content-Type": "application/json"}, body)
        )

    @SETTINGS
    @given(request=requests)
    def fuzz(request: tuple[str, dict[str, str], bytes]) -> None:
        path, headers, body = request
        case = operation.Case(
            path_parameters={"source": "bigcommerce"} if "{source}" in label else {},
            headers=headers,
            body=body,
            media_type="application/json",
        )
        try:
            response = app_client.post(path, content=body, headers=headers)
            check(case, response)
            support.resolve_all()  # what was acknowledged can be put on profiles
        except (Exception, BaseExceptionGroup) as exc:
            if report is None:
                exc.add_note(f"{path}: {describe(case, body)}")
                raise
            report.failed(case, "ingest", exc)
        else:
            if report is not None:
                report.passed(response)

    fuzz()
    if report is not None:
        report.write()
