#!/usr/bin/env python3
"""What a runner holds in Redis (keys under its prefix) and MySQL (every table of its database),
as one comparable value, and a readable diff of two of them. Used by scripts/schemathesis.sh:
per request (deploy/schemathesis_hooks.py) and around the whole negative phase (this CLI).

    schemathesis_state.py snapshot FILE     write the state as JSON
    schemathesis_state.py compare FILE      compare the state now with FILE; exit 1 on a difference

Environment: REDIS_URL, REDIS_KEY_PREFIX (keys matched as "<prefix>:*"), DATABASE_URL
(mysql://user[:password]@host[:port]/db). Needs redis and pymysql (the schemathesis venv).
"""

import json
import os
import sys
import time
from urllib.parse import unquote, urlparse

import pymysql
import redis

_redis = None
_mysql = None


def _r():
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    return _redis


def _db():
    global _mysql
    if _mysql is None:
        u = urlparse(os.environ["DATABASE_URL"])
        _mysql = pymysql.connect(
            host=u.hostname or "127.0.0.1",
            port=u.port or 3306,
            user=unquote(u.username or "root"),
            password=unquote(u.password or ""),
            database=u.path.lstrip("/"),
            autocommit=True,  # every SELECT sees the latest commit (no REPEATABLE READ snapshot)
        )
    return _mysql


def _text(b):
    return b.decode("utf-8", "backslashreplace") if isinstance(b, bytes) else str(b)


def redis_state(prefix=None, ttls=None):
    """{key: [type, value]} for every key under the prefix; values in a canonical order. With
    `ttls` (a dict), also each key's remaining time to live in ms (-1: none)."""
    prefix = prefix or os.environ["REDIS_KEY_PREFIX"]
    r, out = _r(), {}
    for raw in r.scan_iter(match=f"{prefix}:*", count=1000):
        key = _text(raw)
        kind = _text(r.type(raw))
        if ttls is not None:
            ttls[key] = r.pttl(raw)
        if kind == "string":
            value = _text(r.get(raw))
        elif kind == "hash":
            value = sorted([_text(k), _text(v)] for k, v in r.hgetall(raw).items())
        elif kind == "set":
            value = sorted(_text(m) for m in r.smembers(raw))
        elif kind == "zset":
            value = [[_text(m), s] for m, s in r.zrange(raw, 0, -1, withscores=True)]
        elif kind == "list":
            value = [_text(m) for m in r.lrange(raw, 0, -1)]
        elif kind == "stream":
            value = [[_text(i), sorted([_text(k), _text(v)] for k, v in f.items())] for i, f in r.xrange(raw)]
        elif kind == "none":  # expired between SCAN and TYPE
            continue
        else:
            value = _text(r.dump(raw))
        out[key] = [kind, value]
    return out


def mysql_state():
    """{table: [row, ...]} for every table of the database, rows sorted, values as text."""
    db, out = _db(), {}
    with db.cursor() as cur:
        cur.execute("SHOW TABLES")
        tables = sorted(row[0] for row in cur.fetchall())
        for table in tables:
            cur.execute(f"SELECT * FROM `{table}`")
            out[table] = sorted([None if v is None else _text(v) for v in row] for row in cur.fetchall())
    return out


def snapshot():
    """The state, and (under "ttl", not compared) when each key with a TTL expires."""
    ttls = {}
    redis = redis_state(ttls=ttls)
    now_ms = time.time() * 1000
    expires = {k: now_ms + v for k, v in ttls.items() if v is not None and v >= 0}
    return {"redis": redis, "mysql": mysql_state(), "ttl": expires, "at_ms": now_ms}


# A key whose TTL ran out between the two reads was not deleted by the request: Redis expired it
# (the per-user rate-limit windows do, every minute). Clocks: both reads are on this machine.
EXPIRY_SLACK_MS = 250


def diff(before, after, limit=20):
    """Readable lines for every difference (at most `limit`), empty when equal."""
    lines = []
    rb, ra = before["redis"], after["redis"]
    expires = before.get("ttl") or {}
    after_ms = after.get("at_ms")
    for key in sorted(set(rb) | set(ra)):
        if key not in ra and key in expires and after_ms is not None and expires[key] <= after_ms + EXPIRY_SLACK_MS:
            continue  # expired
        if key not in ra:
            lines.append(f"redis: key {key} was deleted (was {json.dumps(rb[key])[:200]})")
        elif key not in rb:
            lines.append(f"redis: key {key} was created: {json.dumps(ra[key])[:200]}")
        elif rb[key] != ra[key]:
            lines.append(f"redis: key {key} changed: {json.dumps(rb[key])[:200]} -> {json.dumps(ra[key])[:200]}")
    mb, ma = before["mysql"], after["mysql"]
    for table in sorted(set(mb) | set(ma)):
        old = {json.dumps(r) for r in mb.get(table, [])}
        new = {json.dumps(r) for r in ma.get(table, [])}
        if table not in ma or table not in mb:
            lines.append(f"mysql: table {table} {'dropped' if table not in ma else 'created'}")
        for row in sorted(old - new):
            lines.append(f"mysql: {table}: row gone or changed: {row[:300]}")
        for row in sorted(new - old):
            lines.append(f"mysql: {table}: row added or changed: {row[:300]}")
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more"]
    return lines


def main(argv):
    if len(argv) != 2 or argv[0] not in ("snapshot", "compare"):
        print(__doc__, file=sys.stderr)
        return 2
    command, path = argv
    if command == "snapshot":
        with open(path, "w") as f:
            json.dump(snapshot(), f)
        return 0
    with open(path) as f:
        before = json.load(f)
    lines = diff(before, json.loads(json.dumps(snapshot())))
    if lines:
        print("state changed:")
        for line in lines:
            print(f"  - {line}")
        return 1
    print(f"state unchanged: {len(before['redis'])} Redis keys, {len(before['mysql'])} MySQL tables")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
