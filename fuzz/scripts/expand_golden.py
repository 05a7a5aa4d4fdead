#!/usr/bin/env python3
"""Expands the placeholders of a golden binding context (see tests/common/mod.rs `expand`).

usage: expand_golden.py CASE_DIR/binding-context.json > expanded.json

{{pem:X}}      testdata/certs/X.pem, JSON-escaped (the text sits inside a JSON string)
{{b64:X}}      base64 of that file
{{fp:X}}       SHA-256 (hex) of the DER of its first PEM block
{{text:F}}     the case-local file F, itself expanded, JSON-escaped
{{b64text:F}}  base64 of the expanded case-local file F
{{pem-indent4:X}} the PEM with every line indented by four spaces ({{pem-indent6:X}}: six)
{{repeat:N:T}} the text T, N times (large inputs without large files)
"""
import base64
import hashlib
import json
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CERTS = os.path.join(ROOT, "testdata", "certs")
PLACEHOLDER = re.compile(r"\{\{([a-z0-9-]+):([^}]*)\}\}")


def cert(name):
    with open(os.path.join(CERTS, name + ".pem"), encoding="utf-8") as f:
        return f.read()


def json_escape(s):
    return json.dumps(s, ensure_ascii=False)[1:-1]


def fingerprint(name):
    body = "".join(l for l in cert(name).splitlines() if not l.startswith("-----"))
    return hashlib.sha256(base64.b64decode(body)).hexdigest()


def expand(text, case_dir, as_json):
    def one(m):
        kind, arg = m.group(1), m.group(2)
        if kind == "pem":
            p = cert(arg)
            return json_escape(p) if as_json else p
        if kind in ("pem-indent4", "pem-indent6"):
            pad = " " * int(kind[-1])
            return "".join(pad + l + "\n" for l in cert(arg).splitlines())
        if kind == "repeat":
            n, t = arg.split(":", 1)
            return t * int(n)
        if kind == "b64":
            return base64.b64encode(cert(arg).encode()).decode()
        if kind == "fp":
            return fingerprint(arg)
        if kind in ("text", "b64text"):
            with open(os.path.join(case_dir, arg), encoding="utf-8") as f:
                t = expand(f.read(), case_dir, False)
            if kind == "b64text":
                return base64.b64encode(t.encode()).decode()
            return json_escape(t) if as_json else t
        raise SystemExit(f"unknown placeholder kind {kind}")

    return PLACEHOLDER.sub(one, text)


if __name__ == "__main__":
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    out = expand(text, os.path.dirname(os.path.abspath(path)), True)
    try:
        json.loads(out)
    except ValueError as e:  # a few golden inputs are malformed on purpose
        print(f"{path}: not JSON after expansion ({e})", file=sys.stderr)
    sys.stdout.write(out)
