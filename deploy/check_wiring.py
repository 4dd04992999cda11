#!/usr/bin/env python3
"""Drift check: does the local runner wire the functions the way template.yaml does?

    flash-local wiring | deploy/check_wiring.py            # wiring JSON on stdin
    deploy/check_wiring.py wiring.json [--template PATH]   # or from a file ("-" is stdin)
    deploy/check_wiring.py --print-template                # the template's wiring, as JSON

Compares, in both directions:
  routes         method + path -> function + auth ("none" | "user" | "admin"; admin: the route
                 requires the AdminScope parameter, `!Ref AdminScope` or its default written out)
  functions      BuildProperties.Binary, and the set of environment variable names
                 (Globals.Function.Environment merged with the function's own)
  event_sources  SQS events: function, queue logical id, batch size, batching window
  schedules      Schedule / ScheduleV2 events: function, expression

Prints every difference and exits 1; prints "wiring matches template.yaml" and exits 0 when
there is none; exits 2 when an input cannot be read. Needs only the standard library and PyYAML.
"""

import json
import sys
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("check_wiring.py needs PyYAML (pip install pyyaml, or use deploy/sam.sh's venv)")

DEFAULT_TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
SQS_DEFAULT_BATCH = 10  # SAM / Lambda default for an SQS event without BatchSize


class CfnLoader(yaml.SafeLoader):
    """A SafeLoader that turns CloudFormation short tags into their long form:
    !Ref X -> {"Ref": X}, !GetAtt A.B -> {"Fn::GetAtt": ["A", "B"]}, !Sub s -> {"Fn::Sub": s}."""


def _cfn_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


def ref_target(value):
    """The logical id a !Ref / !GetAtt points at, else the value itself."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
    return value


def route_auth(event_auth, api, admin_scope="admin"):
    """'none', 'user' or 'admin' for one HttpApi event, given its API's Auth section. A scope
    may be written `!Ref AdminScope`: it is the admin scope whatever value a deploy gives it."""
    api_auth = (api or {}).get("Auth") or {}
    event_auth = event_auth or {}
    authorizer = event_auth.get("Authorizer", api_auth.get("DefaultAuthorizer"))
    if authorizer in (None, "NONE"):
        return "none"
    scopes = event_auth.get("AuthorizationScopes")
    if scopes is None:
        scopes = ((api_auth.get("Authorizers") or {}).get(authorizer) or {}).get("AuthorizationScopes") or []
    admin = any(s == admin_scope or (isinstance(s, dict) and s.get("Ref") == "AdminScope") for s in scopes)
    return "admin" if admin else "user"


def from_template(template):
    """The template's wiring, in the shape `flash-local wiring` prints."""
    resources = template.get("Resources") or {}
    globals_ = template.get("Globals") or {}
    global_env = (((globals_.get("Function") or {}).get("Environment") or {}).get("Variables")) or {}
    implicit_api = globals_.get("HttpApi") or {}
    admin_scope = ((template.get("Parameters") or {}).get("AdminScope") or {}).get("Default", "admin")
    wiring = {"routes": [], "functions": {}, "event_sources": [], "schedules": []}
    for name, res in resources.items():
        if (res or {}).get("Type") != "AWS::Serverless::Function":
            continue
        props = res.get("Properties") or {}
        binary = ((res.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
        own_env = ((props.get("Environment") or {}).get("Variables")) or {}
        wiring["functions"][name] = {"binary": binary, "env": sorted(set(global_env) | set(own_env))}
        for event in (props.get("Events") or {}).values():
            kind, ep = event.get("Type"), event.get("Properties") or {}
            if kind == "HttpApi":
                api_id = ref_target(ep.get("ApiId"))
                api = (resources.get(api_id) or {}).get("Properties") if api_id else implicit_api
                wiring["routes"].append({
                    "method": str(ep.get("Method", "ANY")).upper(),
                    "path": ep.get("Path", "/$default"),
                    "function": name,
                    "auth": route_auth(ep.get("Auth"), api, admin_scope),
                })
            elif kind == "SQS":
                wiring["event_sources"].append({
                    "function": name,
                    "queue": ref_target(ep.get("Queue")),
                    "batch_size": ep.get("BatchSize", SQS_DEFAULT_BATCH),
                    "batching_window_secs": ep.get("MaximumBatchingWindowInSeconds", 0),
                })
            elif kind in ("Schedule", "ScheduleV2"):
                expr = ep.get("Schedule") if kind == "Schedule" else ep.get("ScheduleExpression")
                wiring["schedules"].append({"function": name, "schedule": expr})
    return wiring


def compare(template_wiring, local, diffs):
    # Routes: keyed by method + path.
    def routes(items, where):
        table = {}
        for r in items:
            key = (str(r.get("method", "")).upper(), r.get("path"))
            if key in table:
                diffs.append(f"route {key[0]} {key[1]}: declared twice in {where}")
            table[key] = (r.get("function"), r.get("auth"))
        return table

    t_routes = routes(template_wiring["routes"], "template.yaml")
    l_routes = routes(local.get("routes") or [], "the wiring")
    for key in sorted(set(t_routes) | set(l_routes), key=lambda k: (k[1] or "", k[0])):
        label = f"route {key[0]} {key[1]}"
        if key not in l_routes:
            diffs.append(f"{label}: in template.yaml ({t_routes[key][0]}, auth {t_routes[key][1]}) but not in the wiring")
        elif key not in t_routes:
            diffs.append(f"{label}: in the wiring ({l_routes[key][0]}, auth {l_routes[key][1]}) but not in template.yaml")
        else:
            (tf, ta), (lf, la) = t_routes[key], l_routes[key]
            if tf != lf:
                diffs.append(f"{label}: function is {tf} in template.yaml, {lf} in the wiring")
            if ta != la:
                diffs.append(f"{label}: auth is {ta!r} in template.yaml, {la!r} in the wiring")

    # Functions: binary and environment variable names.
    t_fns, l_fns = template_wiring["functions"], local.get("functions") or {}
    for name in sorted(set(t_fns) | set(l_fns)):
        if name not in l_fns:
            diffs.append(f"function {name}: in template.yaml but not in the wiring")
            continue
        if name not in t_fns:
            diffs.append(f"function {name}: in the wiring but not in template.yaml")
            continue
        t, l = t_fns[name], l_fns[name] or {}
        if t["binary"] != l.get("binary"):
            diffs.append(f"function {name}: binary is {t['binary']!r} in template.yaml, {l.get('binary')!r} in the wiring")
        t_env, l_env = set(t["env"]), set(l.get("env") or [])
        if t_env - l_env:
            diffs.append(f"function {name}: env only in template.yaml: {', '.join(sorted(t_env - l_env))}")
        if l_env - t_env:
            diffs.append(f"function {name}: env only in the wiring: {', '.join(sorted(l_env - t_env))}")

    # SQS event sources: keyed by function + queue.
    def sources(items):
        return {
            (s.get("function"), s.get("queue")): (s.get("batch_size"), s.get("batching_window_secs", 0)) for s in items
        }

    t_src, l_src = sources(template_wiring["event_sources"]), sources(local.get("event_sources") or [])
    for key in sorted(set(t_src) | set(l_src), key=str):
        label = f"event source {key[1]} -> {key[0]}"
        if key not in l_src:
            diffs.append(f"{label}: in template.yaml (batch {t_src[key]}) but not in the wiring")
        elif key not in t_src:
            diffs.append(f"{label}: in the wiring (batch {l_src[key]}) but not in template.yaml")
        elif t_src[key] != l_src[key]:
            diffs.append(f"{label}: (batch size, batching window s) is {t_src[key]} in template.yaml, {l_src[key]} in the wiring")

    # Schedules: set of (function, expression).
    t_sch = {(s["function"], s["schedule"]) for s in template_wiring["schedules"]}
    l_sch = {(s.get("function"), s.get("schedule")) for s in local.get("schedules") or []}
    for fn, expr in sorted(t_sch - l_sch, key=str):
        diffs.append(f"schedule {expr} -> {fn}: in template.yaml but not in the wiring")
    for fn, expr in sorted(l_sch - t_sch, key=str):
        diffs.append(f"schedule {expr} -> {fn}: in the wiring but not in template.yaml")


def main(argv):
    args, template_path = [], DEFAULT_TEMPLATE
    it = iter(argv)
    for a in it:
        if a == "--template":
            template_path = Path(next(it, ""))
        elif a == "--print-template":
            args.append(a)
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            args.append(a)
    try:
        template = yaml.load(template_path.read_text(), Loader=CfnLoader)
        if "--print-template" in args:
            print(json.dumps(from_template(template), indent=2))
            return 0
        source = args[0] if args else "-"
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
        local = json.loads(text)
        if not isinstance(local, dict):
            raise ValueError("the wiring must be a JSON object")
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"check_wiring: {e}", file=sys.stderr)
        return 2
    diffs = []
    compare(from_template(template), local, diffs)
    if diffs:
        print(f"wiring differs from {template_path.name} ({len(diffs)} difference(s)):")
        for d in diffs:
            print(f"  - {d}")
        return 1
    print("wiring matches template.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
