#!/usr/bin/env python3
# Writes the binding contexts of the peer-isolation golden cases in testdata/discovery/
# (limits, budget holds, nested trust domains, UUID theft); the expected outputs come from
# `UPDATE_GOLDEN=1 cargo test --test golden`. FILL sizes budget-hold-trust-bundle so that the
# ConfigMap is within 900 KiB without b's root (about 921,280 bytes) and over it with it
# (922,003 bytes).
import json, copy, os, shutil
base_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'testdata', 'discovery')
src = json.load(open(f'{base_dir}/corrupted-cache-keeps-objects/binding-context.json'))
ENV = "ISTIO_FEDERATION_ENABLED=true\nCLUSTER_DOMAIN=my.cluster\nCLUSTER_UUID=deadbeef-mycluster\n"

def fed(name, td, uuid, key, root, private=None):
    cache = {"public": {"clusterUUID": uuid, "authnKeyPub": "{{pem:%s}}" % key, "rootCA": root},
             "publicLastFetchTimestamp": "2026-12-31T23:55:00Z"}
    if private is not None:
        cache["private"] = private
        cache["privateLastFetchTimestamp"] = "2026-12-31T23:55:00Z"
    return {"object": {"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation",
        "metadata": {"name": name, "uid": "uid-" + name, "resourceVersion": "100", "generation": 1,
                     "creationTimestamp": "2026-10-01T00:00:00Z"},
        "spec": {"trustDomain": td, "metadataEndpoint": f"https://istio-metadata.{td}.example/metadata/"},
        "status": {"metadataCache": cache}}}

def svc(host, ports):
    return {"hostname": host, "ports": [{"name": n, "port": p} for n, p in ports]}

def write(name, bc, env=ENV, files=None, compact=False):
    d = f'{base_dir}/{name}'
    os.makedirs(d, exist_ok=True)
    with open(f'{d}/binding-context.json', 'w') as f:
        json.dump(bc, f, indent=None if compact else 2)
        f.write("\n")
    open(f'{d}/env', 'w').write(env)
    for fn, text in (files or {}).items():
        open(f'{d}/{fn}', 'w').write(text)

PLAIN_CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "d8-istio", "resourceVersion": "42"},
            "data": {"mesh": "trustDomain: my.cluster\n"}}

def context(feds, trust_cm=PLAIN_CM, ses=None, drs=None):
    bc = copy.deepcopy(src)
    s = bc[0]['snapshots']
    s['federations'] = feds
    if trust_cm is not None:
        s['trust_bundle'] = [{"object": trust_cm}]
    s['service_entries'] = ses or []
    s['destination_rules'] = drs or []
    return bc

def cm(mesh_placeholder, owned):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "d8-istio",
            "resourceVersion": "42", "annotations": {"federation.istio.deckhouse.io/managed-trust-entries": json.dumps(owned, separators=(',', ':'))}},
            "data": {"mesh": mesh_placeholder}}

# 1. Cached private over MAX_SERVICES_PER_PEER: unusable, objects kept.
bc = copy.deepcopy(src)
b = bc[0]['snapshots']['federations'][0]['object']
b['status']['metadataCache']['public']['rootCA'] = "{{pem:peer-b-root}}"
b['status']['metadataCache']['private'] = {"ingressGateways": [{"address": "9.9.9.9", "port": 15443}],
    "publicServices": [svc("web.prod.svc.b.local", [("http", 80)]), svc("api.prod.svc.b.local", [("http", 80)])]}
write('limit-exceeded-cached-keeps-objects', bc, ENV + "MAX_SERVICES_PER_PEER=1\n",
      {"mesh.yaml": open(f'{base_dir}/corrupted-cache-keeps-objects/mesh.yaml').read()})

# 2. Nested trust domains.
feds = [
    fed("example", "example.test", "uuid-example", "peer-b-authn-pub", "{{pem:peer-b-root}}",
        {"ingressGateways": [{"address": "1.1.1.1", "port": 15443}],
         "publicServices": [svc("pay.prod.example.test", [("http", 80)]), svc("web.example.test", [("http", 80)])]}),
    fed("prod", "prod.example.test", "uuid-prod", "peer-c-authn-pub", "{{pem:peer-c-root}}",
        {"ingressGateways": [{"address": "2.2.2.2", "port": 15443}],
         "publicServices": [svc("pay.prod.example.test", [("http", 80)])]}),
    fed("prod-replica", "prod.example.test", "uuid-prod-replica", "peer-c-authn-pub", "{{pem:peer-c-root}}",
        {"ingressGateways": [{"address": "3.3.3.3", "port": 15443}],
         "publicServices": [svc("pay.prod.example.test", [("http", 80)])]}),
]
write('nested-trust-domains-longest-suffix-owns', context(feds))

# 3. UUID theft: z-thief cached b's UUID (written before the rule); b keeps it.
feds = [
    fed("b", "b.local", "uuid-b", "peer-b-authn-pub", "{{pem:peer-b-root}}",
        {"ingressGateways": [{"address": "1.1.1.1", "port": 15443}], "publicServices": [svc("web.prod.svc.b.local", [("http", 80)])]}),
    fed("z-thief", "thief.local", "uuid-b", "peer-c-authn-pub", "{{pem:peer-c-root}}",
        {"ingressGateways": [{"address": "6.6.6.6", "port": 15443}], "publicServices": [svc("web.prod.svc.thief.local", [("http", 80)])]}),
]
write('uuid-theft-cached-owner-keeps-it', context(feds))

# 4. A ServiceEntry over the budget: big held, c proceeds.
gws = [{"address": f"10.0.{i // 200}.{i % 200 + 1}", "port": 15443} for i in range(64)]
ports = [(f"tcp-{p}", p) for p in range(1, 1201)]
feds = [
    fed("big", "big.test", "uuid-big", "peer-b-authn-pub", "{{pem:peer-b-root}}",
        {"ingressGateways": gws, "publicServices": [svc("wide.big.test", ports), svc("small.big.test", [("http", 80)])]}),
    fed("c", "c.local", "uuid-c", "peer-c-authn-pub", "{{pem:peer-c-root}}",
        {"ingressGateways": [{"address": "3.3.3.3", "port": 15443}], "publicServices": [svc("web.prod.svc.c.local", [("http", 80)])]}),
]
write('budget-hold-oversized-service-entry', context(feds), compact=True)

# 5. The trust bundle over the budget: b (new root) held, c (root installed) proceeds.
feds = [
    fed("b", "b.local", "uuid-b", "peer-b-authn-pub", "{{pem:peer-b-root}}",
        {"ingressGateways": [{"address": "1.1.1.1", "port": 15443}], "publicServices": [svc("web.prod.svc.b.local", [("http", 80)])]}),
    fed("c", "c.local", "uuid-c", "peer-c-authn-pub", "{{pem:peer-c-root}}",
        {"ingressGateways": [{"address": "3.3.3.3", "port": 15443}], "publicServices": [svc("web.prod.svc.c.local", [("http", 80)])]}),
]
FILL = int(os.environ.get('FILL', '920000'))
mesh = ("trustDomain: my.cluster\ndefaultConfig:\n  proxyMetadata:\n    FILLER: {{repeat:%d:x}}\n"
        "caCertificates:\n- pem: |\n{{pem-indent4:peer-c-root}}  trustDomains:\n  - c.local\n") % FILL
write('budget-hold-trust-bundle', context(feds, cm("{{text:mesh.yaml}}", {"c.local": ["{{fp:peer-c-root}}"]})),
      files={"mesh.yaml": mesh})
