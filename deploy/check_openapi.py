#!/usr/bin/env python3
"""Drift check: does openapi.yaml describe the routes the runner serves and template.yaml deploys?

    flash-local wiring | deploy/check_openapi.py             # wiring JSON on stdin
    deploy/check_openapi.py wiring.json                      # or from a file ("-" is stdin)
        [--openapi PATH] [--template PATH]

Compares the set of (method, path, auth) of openapi.yaml with the routes of `flash-local wiring`
and with template.yaml's HttpApi events (read with deploy/check_wiring.py's loader and rules, so
`!Ref AdminScope` is the admin scope there too), in both directions. auth is "none" | "user" |
"admin", from each operation's `security` (or the document's): no requirement (or an empty one)
is none, a requirement with no scopes is user, one that lists the admin scope (`admin`) is admin.
An operation whose security lists alternatives must agree on one auth, or it is reported.

Prints every difference and exits 1; prints "openapi.yaml matches the wiring and template.yaml"
and exits 0 when there is none; exits 2 when an input cannot be read. Standard library + PyYAML.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_wiring  # noqa: E402  (the template loader and route rules; it also imports yaml)
from check_wiring import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OPENAPI = ROOT / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def operation_auth(requirements, admin_scope, problems, label):
    """'none', 'user' or 'admin' for one operation's list of security requirements."""
    kinds = set()
    for req in requirements or [{}]:
        if not req:  # {} = anonymous access allowed
            kinds.add("none")
            continue
        scopes = [s for scheme_scopes in req.values() for s in (scheme_scopes or [])]
        kinds.add("admin" if admin_scope in scopes else "user")
    if len(kinds) > 1:
        problems.append(f"{label}: security alternatives disagree ({', '.join(sorted(kinds))})")
    # The loosest alternative is what a client may do.
    for kind in ("none", "user", "admin"):
        if kind in kinds:
            return kind
    return "none"


def from_openapi(doc, problems, admin_scope="admin"):
    """{(METHOD, path): auth} of an OpenAPI document."""
    routes = {}
    global_security = doc.get("security")
    for path, item in (doc.get("paths") or {}).items():
        for method in METHODS:
            op = (item or {}).get(method)
            if op is None:
                continue
            key = (method.upper(), path)
            security = op.get("security", global_security)
            routes[key] = operation_auth(security, admin_scope, problems, f"openapi {key[0]} {key[1]}")
    return routes


def as_table(routes):
    return {(str(r.get("method", "")).upper(), r.get("path")): r.get("auth") for r in routes}


def compare(name_a, a, name_b, b, diffs):
    for key in sorted(set(a) | set(b), key=lambda k: (k[1] or "", k[0])):
        label = f"{key[0]} {key[1]}"
        if key not in b:
            diffs.append(f"{label}: in {name_a} (auth {a[key]}) but not in {name_b}")
        elif key not in a:
            diffs.append(f"{label}: in {name_b} (auth {b[key]}) but not in {name_a}")
        elif a[key] != b[key]:
            diffs.append(f"{label}: auth is {a[key]!r} in {name_a}, {b[key]!r} in {name_b}")


def main(argv):
    openapi_path, template_path, args = DEFAULT_OPENAPI, check_wiring.DEFAULT_TEMPLATE, []
    it = iter(argv)
    for a in it:
        if a == "--openapi":
            openapi_path = Path(next(it, ""))
        elif a == "--template":
            template_path = Path(next(it, ""))
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            args.append(a)
    try:
        doc = yaml.safe_load(openapi_path.read_text())
        if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3."):
            raise ValueError(f"{openapi_path} is not an OpenAPI 3 document")
        template = yaml.load(template_path.read_text(), Loader=check_wiring.CfnLoader)
        source = args[0] if args else "-"
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
        wiring = json.loads(text)
        if not isinstance(wiring, dict) or not isinstance(wiring.get("routes"), list):
            raise ValueError("the wiring must be a JSON object with a routes list")
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"check_openapi: {e}", file=sys.stderr)
        return 2

    # The scope named in openapi.yaml is the template's AdminScope default (what a deploy uses
    # unless told otherwise; check_wiring reads `!Ref AdminScope` as admin whatever its value).
    admin_scope = ((template.get("Parameters") or {}).get("AdminScope") or {}).get("Default", "admin")
    diffs = []
    spec = from_openapi(doc, diffs, admin_scope)
    runner = as_table(wiring["routes"])
    deployed = as_table(check_wiring.from_template(template)["routes"])
    compare(openapi_path.name, spec, "the runner's wiring", runner, diffs)
    compare(openapi_path.name, spec, template_path.name, deployed, diffs)
    if diffs:
        print(f"{openapi_path.name} differs from the routes ({len(diffs)} difference(s)):")
        for d in diffs:
            print(f"  - {d}")
        return 1
    print(f"{openapi_path.name} matches the wiring and {template_path.name} ({len(spec)} operations)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
