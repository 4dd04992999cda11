"""Schemathesis hooks for scripts/schemathesis.sh (loaded with SCHEMATHESIS_HOOKS).

One custom check, `refused_requests_change_nothing`: a request the API refused must leave Redis
(the keys under REDIS_KEY_PREFIX) and MySQL (every table) exactly as they were. The state is
read right before the request is sent (`before_call`) and right after its response arrived
(`after_call`); the check compares the two for every refused response and reports the
difference with the request that caused it. The runner is this script's alone and
Schemathesis sends one request at a time (--workers 1), so nothing else writes in between.

Which responses count as refused (ST_REFUSED):
  input    (default) refusals of what the request carried, and failures: every GatewayError
           (401, 403, 404, 413, 500, ...), every 5xx (a dependency that is down "gets 503 and
           changes nothing"), and the function errors invalid_request, payload_too_large,
           unauthenticated, forbidden, not_found, product_not_found, activity_not_found and
           order_not_found (a product_not_found may leave one thing: the product's "no sale"
           marker, `<prefix>:{p<id>}:sale` with activity_id 0, the negative cache that keeps the
           next lookups of a listed product without an activity off MySQL). Business outcomes
           are not: sold_out, already_bought, sale_not_open,
           rate_limited (a buy that loses still counts against the buyer's per-minute
           allowance, by design), order_cancelled, order_not_ready.
  all      every status >= 400
  off      no check

Schemathesis's negative mode does not send only invalid requests (an unknown query parameter,
a valid JSON body under another Content-Type, an operation whose only input is a valid id):
some are accepted, and what they change is theirs to change. One accepted request has effects
that land later: a 202 from POST /buy has the order consumer write the order a moment after.
So after a 202 from /buy, `after_call` waits (up to 15 s) until that purchase has left the
outbox (the consumer acknowledges it after writing the row), before the next request's state is
read: a later refused request is never blamed for the consumer's write.
"""

import json
import os
import sys
import time
from pathlib import Path

import schemathesis

sys.path.insert(0, str(Path(__file__).resolve().parent))
import schemathesis_state as state  # noqa: E402

INPUT_REFUSALS = {
    "invalid_request",
    "payload_too_large",
    "unauthenticated",
    "forbidden",
    "not_found",
    "product_not_found",
    "activity_not_found",
    "order_not_found",
}

# case id -> state before / after its call (one request at a time; popped by the check).
_before = {}
_after = {}


def mode():
    return os.environ.get("ST_REFUSED", "input")


def error_code(body):
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        return None
    return ((doc.get("error") or {}).get("code") if isinstance(doc, dict) and isinstance(doc.get("error"), dict)
            else None)


def without_no_sale_markers(before, after):
    """The states without the "no sale" markers (a sale hash whose activity_id is 0) that
    `after` holds: what a product_not_found may write."""
    markers = {
        key for key, (kind, value) in after["redis"].items()
        if key.endswith(":sale") and kind == "hash" and ["activity_id", "0"] in value
    }
    strip = lambda s: {**s, "redis": {k: v for k, v in s["redis"].items() if k not in markers}}  # noqa: E731
    return strip(before), strip(after)


def refused(status, body, how=None):
    """Whether a response is a refusal the state check applies to, under mode `how`."""
    how = how or mode()
    if how == "off" or status < 400:
        return False
    if how == "all" or status >= 500:
        return True
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        return True  # not JSON at all: not a business outcome either
    if isinstance(doc, dict) and set(doc) == {"message"}:
        return True  # API Gateway's own answer: the function never ran
    code = ((doc or {}).get("error") or {}).get("code") if isinstance(doc, dict) else None
    return code in INPUT_REFUSALS


def receipts_of(user):
    """The receipts of `user`'s purchases: order rows, dead letters, and the outbox (not yet
    written), sorted."""
    found = set()
    with state._db().cursor() as cur:
        for table in ("orders", "dead_letters"):
            cur.execute(f"SELECT receipt FROM `{table}` WHERE user_id = %s", (user,))
            found.update(row[0] for row in cur.fetchall())
    prefix = os.environ["REDIS_KEY_PREFIX"]
    for key in state._r().scan_iter(match=f"{prefix}:*:outbox", count=1000):
        for receipt, message in state._r().hgetall(key).items():
            if json.loads(message).get("user_id") == user:
                found.add(state._text(receipt))
    return sorted(found)


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    """With ST_RECEIPTS_OF=<user> (the positive user run): every other generated receipt is
    replaced by one of that user's real receipts, so GET /orders/{receipt} and its pay answer
    200 too (processing, pending_payment, paid), not only 404."""
    user = os.environ.get("ST_RECEIPTS_OF")
    if not user or not path_parameters or "receipt" not in path_parameters:
        return path_parameters
    generated = str(path_parameters["receipt"])
    if len(generated) % 2 == 0:
        known = receipts_of(user)
        if known:
            path_parameters["receipt"] = known[len(generated) // 2 % len(known)]
    return path_parameters


def products_on_sale():
    """Ids of the products whose sale Redis holds (warmed activities), sorted."""
    prefix = os.environ["REDIS_KEY_PREFIX"]
    found = set()
    for raw in state._r().scan_iter(match=f"{prefix}:{{p*}}:sale", count=1000):
        key = state._text(raw)
        if state._r().hget(raw, "activity_id") not in (None, b"0"):
            found.add(int(key.rsplit("{p", 1)[1].split("}", 1)[0]))
    return sorted(found)


@schemathesis.hook
def map_body(context, body):
    """With ST_RECEIPTS_OF (the positive user run): every other generated POST /buy names a
    product that is on sale, so buys answer 202 (and then sold_out, already_bought, ...), not
    only product_not_found."""
    if not os.environ.get("ST_RECEIPTS_OF") or context.operation is None or context.operation.path != "/buy":
        return body
    if isinstance(body, dict) and isinstance(body.get("product_id"), int) and body["product_id"] % 2 == 0:
        on_sale = products_on_sale()
        if on_sale:
            body["product_id"] = on_sale[body["product_id"] // 2 % len(on_sale)]
    return body


@schemathesis.hook
def before_call(context, case, kwargs):
    if mode() != "off":
        _before[case.id] = state.snapshot()


@schemathesis.hook
def after_call(context, case, response):
    if os.environ.get("ST_STATUS_LOG"):  # what every operation answered, for the run's tally
        with open(os.environ["ST_STATUS_LOG"], "a") as f:
            code = error_code(response.content)
            answer = f"{response.status_code}{':' + code if code else ''}"
            f.write(f"{case.operation.method.upper()} {case.operation.path} {answer}\n")
    if case.id in _before:
        _after[case.id] = state.snapshot()
    if response.status_code == 202 and case.operation.path == "/buy":
        settle_purchase(response)


def settle_purchase(response, timeout=15.0):
    """Waits until the purchase a 202 answered has left the outbox (its order is written)."""
    try:
        body = json.loads(response.content)
        key = f"{os.environ['REDIS_KEY_PREFIX']}:{{p{int(body['product_id'])}}}:outbox"
        receipt = body["receipt"]
    except (ValueError, KeyError, TypeError):
        return
    deadline = time.monotonic() + timeout
    while state._r().hexists(key, receipt) and time.monotonic() < deadline:
        time.sleep(0.1)


@schemathesis.check
def refused_requests_change_nothing(ctx, response, case):
    """A refused request changed nothing in Redis or MySQL."""
    before, after = _before.pop(case.id, None), _after.pop(case.id, None)
    if before is None or after is None:
        return None
    if not refused(response.status_code, response.content):
        return None
    if error_code(response.content) == "product_not_found":
        before, after = without_no_sale_markers(before, after)
    lines = state.diff(before, after)
    if lines:
        raise AssertionError(
            f"refused with {response.status_code}, yet the request changed the store:\n" + "\n".join(lines)
        )
    return True
