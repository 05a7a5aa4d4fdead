#!/usr/bin/env python3
"""Fills fuzz/corpus/<target>/ (not committed) with inputs made from testdata/, and rewrites
the few small committed seeds in fuzz/seeds/<target>/.

usage: python3 fuzz/scripts/seed_corpus.py        (from anywhere; needs openssl for the JWTs)

binding_reconcile inputs are one selector byte ('0' mesh-config, '1' cacerts) followed by a
binding context, or by one IstioFederation object (structured mode).
"""
import base64
import glob
import hashlib
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from expand_golden import expand  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FUZZ = os.path.join(ROOT, "fuzz")
CERTS = os.path.join(ROOT, "testdata", "certs")
ORACLE_ROOTS = os.path.join(ROOT, "testdata", "go-oracle", "roots")

NOW = 1_798_761_600  # the targets' clock, 2027-01-01T00:00:00Z
# A valid token lives 60 s from the targets' clock, as Deckhouse's do: serve refuses one that
# expires more than an hour after its clock (jwt::MAX_TOKEN_LIFETIME), so no fixed token stays
# valid for serve's wall clock; tests/fuzz_regressions.rs signs a fresh one for that path.
EXP = NOW + 60


def cert(name):
    with open(os.path.join(CERTS, name + ".pem"), encoding="utf-8") as f:
        return f.read()


def write(dirname, data, name=None):
    if isinstance(data, str):
        data = data.encode()
    os.makedirs(dirname, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(dirname, name), "wb") as f:
        f.write(data)


def compact(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def expanded_cases():
    """(case name, env dict, expanded binding-context text) of every golden case."""
    for path in sorted(glob.glob(os.path.join(ROOT, "testdata", "*", "*", "binding-context.json"))):
        case_dir = os.path.dirname(path)
        env = {}
        env_path = os.path.join(case_dir, "env")
        if os.path.exists(env_path):
            for line in open(env_path, encoding="utf-8"):
                if "=" in line:
                    k, v = line.strip().split("=", 1)
                    env[k] = v
        with open(path, encoding="utf-8") as f:
            text = expand(f.read(), case_dir, True)
        yield os.path.basename(case_dir), env, text


def binding_reconcile():
    corpus = os.path.join(FUZZ, "corpus", "binding_reconcile")
    seeds = os.path.join(FUZZ, "seeds", "binding_reconcile")
    for path in sorted(glob.glob(os.path.join(ROOT, "testdata", "binding-contexts", "*.json"))):
        text = open(path, encoding="utf-8").read()
        for sel in "01":
            write(corpus, sel + text)
    for name in ["06-group.json", "03-kubernetes-synchronization-with-snapshots.json"]:
        text = open(os.path.join(ROOT, "testdata", "binding-contexts", name), encoding="utf-8").read()
        write(seeds, "0" + text, "context-" + name.split(".")[0])
    for case, env, text in expanded_cases():
        sel = "1" if env.get("TRUST_BUNDLE_MODE") == "cacerts" else "0"
        write(corpus, sel + text)
        try:
            ctx = json.loads(text)
        except ValueError:
            continue
        if case in ("hostname-out-of-scope", "cacerts-rotation"):
            write(seeds, sel + compact(ctx), "golden-" + case)
        for item in ctx if isinstance(ctx, list) else []:
            snaps = item.get("snapshots") if isinstance(item, dict) else None
            for fed in (snaps or {}).get("federations", []):
                obj = fed.get("object") if isinstance(fed, dict) else None
                if isinstance(obj, dict):
                    for s in "01":
                        write(corpus, s + compact(obj))
                    seed = os.path.join(seeds, "structured-" + case)
                    if case in ("hostname-out-of-scope", "unnamed-and-invalid-port-names") \
                            and not os.path.exists(seed):
                        write(seeds, "0" + compact(obj), "structured-" + case)


ODD_NINE = [
    "odd-negative-serial", "odd-serial-not-minimal", "odd-duplicate-extension", "odd-ec-point-off-curve",
    "odd-secp256k1", "odd-rsa-negative-modulus", "odd-rsa-exponent-2-64-plus-1", "odd-san-ip-5-bytes",
    "odd-version-4",
]


def metadata():
    corpus = os.path.join(FUZZ, "corpus", "metadata")
    seeds = os.path.join(FUZZ, "seeds", "metadata")
    for path in sorted(glob.glob(os.path.join(CERTS, "*.pem"))):
        write(corpus, open(path, encoding="utf-8").read())
    for name in ["peer-b-root", "peer-b-authn-pub", "deckhouse-fixture-priv", "leaf"]:
        write(seeds, cert(name), "pem-" + name)
    # The Go-oracle corpus (scripts/gen-odd-roots.py): each root alone, and as seeds the
    # controls next to the nine odd roots of issue 10, as PEM text and as public metadata.
    oracle = sorted(glob.glob(os.path.join(ORACLE_ROOTS, "*.pem")))
    for path in oracle:
        write(corpus, open(path, encoding="utf-8").read())
    picked = [p for p in oracle if os.path.basename(p).startswith(("ok-rsa2048", "ok-p256", "ok-ed25519"))]
    picked += [os.path.join(ORACLE_ROOTS, n + ".pem") for n in ODD_NINE]
    bundle = "".join(open(p, encoding="utf-8").read() for p in picked)
    write(seeds, bundle, "pem-go-oracle-bundle")
    public = {"clusterUUID": "uuid-p", "authnKeyPub": cert("peer-b-authn-pub"), "rootCA": bundle}
    write(seeds, json.dumps(public, indent=2), "public-go-oracle-bundle")
    done_public = done_private = False
    for case, _, text in expanded_cases():
        try:
            ctx = json.loads(text)
        except ValueError:
            continue
        for item in ctx if isinstance(ctx, list) else []:
            snaps = item.get("snapshots") if isinstance(item, dict) else None
            for fed in (snaps or {}).get("federations", []):
                obj = fed.get("object") if isinstance(fed, dict) else None
                cache = ((obj or {}).get("status") or {}).get("metadataCache") or {}
                for key in ("public", "private"):
                    if key in cache:
                        write(corpus, json.dumps(cache[key], indent=2))
                if not done_public and "public" in cache:
                    write(seeds, json.dumps(cache["public"], indent=2), "public-" + case)
                    done_public = True
                if not done_private and "private" in cache and case == "hostname-out-of-scope":
                    write(seeds, json.dumps(cache["private"], indent=2), "private-" + case)
                    done_private = True


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(claims, alg="EdDSA", key="peer-b-authn-priv"):
    header = b64url(compact({"alg": alg}).encode())
    payload = b64url(compact(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    with tempfile.NamedTemporaryFile() as f:  # Ed25519 signs in one shot: from a file
        f.write(signing_input)
        f.flush()
        sig = subprocess.run(
            ["openssl", "pkeyutl", "-sign", "-rawin", "-in", f.name,
             "-inkey", os.path.join(CERTS, key + ".pem")],
            capture_output=True, check=True,
        ).stdout
    return f"{header}.{payload}.{b64url(sig)}"


def claims(**over):
    c = {"aud": "own-uuid", "exp": EXP, "iss": "d8-istio", "nbf": NOW,
         "scope": "private-federation", "sub": "peer"}
    c.update(over)
    return c


def jwt_tokens():
    return {
        "valid": token(claims()),
        "expired": token(claims(exp=NOW - 1)),
        "wrong-aud": token(claims(aud="someone-else")),
        "wrong-scope": token(claims(scope="public")),
        "unknown-sub": token(claims(sub="stranger")),
        "other-key": token(claims(), key="peer-c-authn-priv"),
        "alg-none": b64url(b'{"alg":"none"}') + "." + b64url(compact(claims()).encode()) + ".",
    }


def jwt():
    corpus = os.path.join(FUZZ, "corpus", "jwt")
    seeds = os.path.join(FUZZ, "seeds", "jwt")
    for name, t in jwt_tokens().items():
        write(corpus, t)
        write(corpus, "Bearer " + t)
        if name in ("valid", "expired", "alg-none"):
            write(seeds, "Bearer " + t, "bearer-" + name)


def serve_request():
    corpus = os.path.join(FUZZ, "corpus", "serve_request")
    seeds = os.path.join(FUZZ, "seeds", "serve_request")
    tokens = jwt_tokens()

    def get(path, extra="", method="GET", version="HTTP/1.1"):
        return f"{method} {path} {version}\r\nHost: metadata\r\n{extra}\r\n"

    fed = "/metadata/private/federation.json"
    reqs = {
        "get-public": get("/metadata/public/public.json"),
        "get-spiffe": get("/metadata/public/spiffe-bundle-endpoint"),
        "get-healthz": get("/healthz"),
        "get-readyz": get("/readyz"),
        "get-metrics": get("/metrics"),
        "get-federation-no-auth": get(fed),
        "get-federation-valid": get(fed, f"Authorization: Bearer {tokens['valid']}\r\n"),
        "get-federation-expired": get(fed, f"Authorization: Bearer {tokens['expired']}\r\n"),
        "head-public": get("/metadata/public/public.json", method="HEAD"),
        "post-public": get("/metadata/public/public.json",
                           "Content-Length: 5\r\n", method="POST") + "hello",
        "get-with-body": get("/healthz", "Content-Length: 4\r\n") + "body",
        "chunked": get("/healthz", "Transfer-Encoding: chunked\r\n") + "4\r\nbody\r\n0\r\n\r\n",
        "http10": get("/healthz", version="HTTP/1.0"),
        "pipelined": get("/healthz") + get(fed, f"Authorization: Bearer {tokens['valid']}\r\n"),
        "not-found": get("/nope"),
    }
    for name, r in reqs.items():
        write(corpus, r)
        if name in ("get-federation-valid", "pipelined", "chunked", "post-public"):
            write(seeds, r, name)


if __name__ == "__main__":
    binding_reconcile()
    metadata()
    jwt()
    serve_request()
    for t in ("binding_reconcile", "metadata", "jwt", "serve_request"):
        n = len(os.listdir(os.path.join(FUZZ, "corpus", t)))
        s = len(os.listdir(os.path.join(FUZZ, "seeds", t)))
        print(f"{t}: corpus {n} inputs, seeds {s}")
