#!/usr/bin/env python3
"""The check can fail: scripts/schemathesis.sh's validation, fed deliberately broken responses.

Schemathesis's own checks (the very functions `st run --checks ...` runs) are called through
`Case.validate_response` on crafted responses to operations of openapi.yaml; the project's
refused_requests_change_nothing check (deploy/schemathesis_hooks.py) is called with crafted
before/after states. Each broken response must be reported by the check named, and each good
one must pass (so a check that fails everything would be caught too).

Run with the schemathesis venv's python (scripts/schemathesis.sh does); no server is needed.
Prints "N passed, N failed" and exits 1 on any failure.
"""

import json
import os
import sys
from pathlib import Path

import requests

os.environ.setdefault("ST_REFUSED", "off")  # no snapshots from the hooks here: states are crafted
sys.path.insert(0, str(Path(__file__).resolve().parent))

import schemathesis  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import schemathesis_hooks as hooks  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = schemathesis.openapi.from_path(str(ROOT / "openapi.yaml"))
BASE = "http://127.0.0.1:3911"
CHECKS = {
    "not_a_server_error": not_a_server_error,
    "status_code_conformance": status_code_conformance,
    "content_type_conformance": content_type_conformance,
    "response_schema_conformance": response_schema_conformance,
    "response_headers_conformance": response_headers_conformance,
    "refused_requests_change_nothing": hooks.refused_requests_change_nothing,
}

STOCK = {
    "product_id": 1,
    "activity_id": 1,
    "stock": 99,
    "unlimited": False,
    "starts_at": "2026-12-01T22:37:01.123Z",
    "ends_at": "2026-12-02T22:37:01.123Z",
    "state": "open",
}
RECONCILE = {
    "activity_id": 1,
    "initial": 100,
    "redis_stock": 99,
    "orders_pending_payment": 1,
    "orders_paid": 0,
    "orders_cancelled": 0,
    "outbox_pending": 0,
    "dead_lettered": 0,
    "balanced": True,
    "outbox_oldest_age_ms": None,
    "buckets": [{"bucket": 0, "stock": 5, "moving_out": 0, "outbox_pending": 0}],
}


def case_for(method, path, **parts):
    op = SCHEMA[path][method]
    return op.Case(**parts)


def response(case, status, body, content_type="application/json", headers=None):
    prepared = requests.Request(
        case.method, BASE + case.formatted_path, headers={"Authorization": "Bearer x"}
    ).prepare()
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    all_headers = {"content-type": [content_type]} if content_type else {}
    for k, v in (headers or {}).items():
        all_headers[k.lower()] = [v]
    return schemathesis.Response(
        status_code=status,
        headers=all_headers,
        content=content,
        request=prepared,
        elapsed=0.01,
        verify=True,
        message="",
        encoding="utf-8",
    )


def failures_of(case, resp, check):
    """Titles of the failures `check` reports for `resp` ([] when it passes)."""
    try:
        case.validate_response(resp, checks=[CHECKS[check]])
    except FailureGroup as group:
        return [f.title for f in group.exceptions]
    except AssertionError as e:  # a plain check's failure when not wrapped
        return [str(e).splitlines()[0]]
    return []


results = []


def expect(name, case, resp, check, fails):
    got = failures_of(case, resp, check)
    ok = bool(got) == fails
    results.append(ok)
    verdict = "reported" if got else "passed"
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {check} {verdict}{(' (' + '; '.join(got) + ')') if got else ''}")


stock = case_for("GET", "/products/{product_id}/stock", path_parameters={"product_id": 1})
buy = case_for("POST", "/buy", body={"product_id": 1}, media_type="application/json")
reconcile = case_for("GET", "/admin/activities/{id}/reconcile", path_parameters={"id": 1})
pay = case_for("POST", "/orders/{receipt}/pay", path_parameters={"receipt": "1-1-u-100"})

# The good ones pass every check.
for check in CHECKS:
    if check == "refused_requests_change_nothing":
        continue
    expect("a correct 200 stock", stock, response(stock, 200, STOCK), check, fails=False)
expect("a correct reconcile with outbox_oldest_age_ms null", reconcile, response(reconcile, 200, RECONCILE),
       "response_schema_conformance", fails=False)
expect("a correct reconcile with outbox_oldest_age_ms 1234", reconcile,
       response(reconcile, 200, {**RECONCILE, "outbox_oldest_age_ms": 1234}), "response_schema_conformance", fails=False)
expect("a correct 409 already_bought with its receipt", buy,
       response(buy, 409, {"error": {"code": "already_bought", "message": "m", "receipt": "1-1-u-99"}}),
       "response_schema_conformance", fails=False)
expect("a gateway 401 with www-authenticate", buy,
       response(buy, 401, {"message": "Unauthorized"}, headers={"www-authenticate": "Bearer"}),
       "response_schema_conformance", fails=False)

# The broken ones are reported.
missing = {k: v for k, v in STOCK.items() if k != "state"}
expect("a 200 stock missing the required state", stock, response(stock, 200, missing),
       "response_schema_conformance", fails=True)
expect("a 200 stock with an unknown state", stock, response(stock, 200, {**STOCK, "state": "paused"}),
       "response_schema_conformance", fails=True)
expect("a 202 buy with a field the contract does not have", buy,
       response(buy, 202, {"status": "queued", "receipt": "r", "activity_id": 1, "product_id": 1, "extra": 1}),
       "response_schema_conformance", fails=True)
expect("a reconcile with outbox_oldest_age_ms as a string", reconcile,
       response(reconcile, 200, {**RECONCILE, "outbox_oldest_age_ms": "5"}), "response_schema_conformance", fails=True)
expect("a reconcile whose bucket lacks its stock", reconcile,
       response(reconcile, 200, {**RECONCILE, "buckets": [{"bucket": 0, "moving_out": 0, "outbox_pending": 0}]}),
       "response_schema_conformance", fails=True)
expect("a reconcile without outbox_oldest_age_ms", reconcile,
       response(reconcile, 200, {k: v for k, v in RECONCILE.items() if k != "outbox_oldest_age_ms"}),
       "response_schema_conformance", fails=True)
expect("a 400 in the gateway's shape where only the function answers 400", stock,
       response(stock, 400, {"message": "Bad Request"}), "response_schema_conformance", fails=True)
expect("a 409 already_bought without its receipt", buy,
       response(buy, 409, {"error": {"code": "already_bought", "message": "m"}}), "response_schema_conformance", fails=True)
expect("a 200 pay whose order is not paid", pay,
       response(pay, 200, {"receipt": "1-1-u-100", "status": "pending_payment", "order_id": 1, "product_id": 1,
                           "activity_id": 1, "price_cents": 1, "created_at": "2026-12-01T00:00:00Z",
                           "pay_by": "2026-12-01T00:15:00Z", "paid_at": None, "cancelled_at": None}),
       "response_schema_conformance", fails=True)
expect("a 500 from the gateway", stock, response(stock, 500, {"message": "Internal Server Error"}),
       "not_a_server_error", fails=True)
expect("a 502", stock, response(stock, 502, {"message": "Bad Gateway"}), "not_a_server_error", fails=True)
expect("an undocumented status (418)", stock, response(stock, 418, {"message": "teapot"}),
       "status_code_conformance", fails=True)
expect("a 200 stock served as text/html", stock, response(stock, 200, b"<html></html>", content_type="text/html"),
       "content_type_conformance", fails=True)
expect("a 401 whose www-authenticate is not a Bearer challenge", buy,
       response(buy, 401, {"message": "Unauthorized"}, headers={"www-authenticate": "Basic"}),
       "response_headers_conformance", fails=True)

# refused_requests_change_nothing, on crafted states.
calm = {"redis": {"p:{p1}:sale": ["hash", [["stock", "99"]]]}, "mysql": {"orders": []}}
moved = {"redis": {"p:{p1}:sale": ["hash", [["stock", "98"]]]}, "mysql": {"orders": [["1", "1-1-u-99"]]}}
created = {"redis": {**calm["redis"], "p:{p1}:rl:u": ["string", "1"]}, "mysql": calm["mysql"]}


def with_states(mode, before, after, resp, case, name, fails):
    os.environ["ST_REFUSED"] = mode
    hooks._before[case.id], hooks._after[case.id] = before, after
    expect(f"{name} [ST_REFUSED={mode}]", case, resp, "refused_requests_change_nothing", fails)
    os.environ["ST_REFUSED"] = "off"


bad_body = response(buy, 400, {"error": {"code": "invalid_request", "message": "invalid JSON body"}})
forbidden = response(buy, 403, {"message": "Forbidden"})
sold_out = response(buy, 409, {"error": {"code": "sold_out", "message": "sold out"}})
queued = response(buy, 202, {"status": "queued", "receipt": "r", "activity_id": 1, "product_id": 1})
with_states("input", calm, moved, bad_body, buy, "a 400 invalid_request that decremented stock and wrote a row", True)
with_states("input", calm, created, forbidden, buy, "a gateway 403 that created a key", True)
with_states("input", calm, calm, bad_body, buy, "a 400 that changed nothing", False)
with_states("input", calm, created, sold_out, buy, "a 409 sold_out that counted the attempt (business outcome)", False)
with_states("all", calm, created, sold_out, buy, "a 409 that created a key, every refusal counted", True)
with_states("input", calm, moved, response(buy, 503, {"error": {"code": "unavailable", "message": "m"}}), buy,
            "a 503 that changed the state", True)
with_states("input", calm, created, response(stock, 404, {"error": {"code": "product_not_found", "message": "m"}}),
            stock, "a 404 product_not_found that created a key", True)
with_states("all", calm, moved, queued, buy, "a 202 that changed the state (not refused)", False)

marker = {"redis": {**calm["redis"], "p:{p2}:sale": ["hash", [["activity_id", "0"], ["stock", "0"]]]},
          "mysql": calm["mysql"]}
not_found = response(stock, 404, {"error": {"code": "product_not_found", "message": "m"}})
with_states("input", calm, marker, not_found, stock, "a 404 product_not_found that left the no-sale marker", False)
marker_and_more = {"redis": {**marker["redis"], "p:{p2}:buyers": ["hash", [["1:u", "r"]]]}, "mysql": calm["mysql"]}
with_states("input", calm, marker_and_more, not_found, stock, "a 404 product_not_found that left the marker and more", True)

expiring = {**created, "ttl": {"p:{p1}:rl:u": 1000.0}, "at_ms": 900.0}
with_states("input", expiring, {**calm, "at_ms": 1001.0}, bad_body, buy,
            "a 400 during which a key's TTL ran out (Redis expired it)", False)
with_states("input", {**created, "ttl": {"p:{p1}:rl:u": 60000.0}, "at_ms": 900.0}, {**calm, "at_ms": 1001.0},
            bad_body, buy, "a 400 that deleted a key whose TTL had a minute left", True)

passed, failed = sum(results), len(results) - sum(results)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
