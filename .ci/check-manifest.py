#!/usr/bin/env python3
"""Checks a Kubernetes manifest of the service beyond its schema (kubernetes-validate does that).

  check-manifest.py policy MANIFEST
      The hardening users expect, for every pod template (Deployment, StatefulSet, DaemonSet, Job,
      CronJob) and every container and init container in it: runAsNonRoot, a non-zero numeric
      runAsUser, seccompProfile RuntimeDefault, allowPrivilegeEscalation false,
      readOnlyRootFilesystem true, capabilities dropping ALL, not privileged, an image with a version
      tag (not `latest`, not untagged). The ConfigMap's config.toml sets server.admin_listen, and
      the admin port is neither behind a Service nor reachable except from the pods a NetworkPolicy
      names (namespace and pod selectors together; no ipBlock, no rule open to all), while the
      public port (server.listen) is allowed in.

  check-manifest.py extract-config MANIFEST OUTDIR
      Writes the config.toml that the Deployment mounts (from its ConfigMap) to OUTDIR/config.toml,
      with the Secret volumes' mount paths moved under OUTDIR and a distinct stand-in value written
      for every item of those Secrets, so that `voltage-webhooks check-config` can resolve every
      secret the way the pod would. Prints the path of the written config.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}


def load(path: str) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def pod_spec(doc: dict) -> dict:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def config_of(docs: list[dict], template: dict) -> tuple[dict, str]:
    """The ConfigMap key mounted where the main container's --config points."""
    spec = template["spec"]
    container = spec["containers"][0]
    args = container.get("args", []) + container.get("command", [])
    config_path = args[args.index("--config") + 1] if "--config" in args else None
    if config_path is None:
        raise SystemExit("the main container passes no --config")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if config_path.startswith(prefix) and "configMap" in volumes[mount["name"]]:
            name = volumes[mount["name"]]["configMap"]["name"]
            key = config_path[len(prefix):]
            for doc in docs:
                if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == name:
                    if key not in doc.get("data", {}):
                        raise SystemExit(f"ConfigMap {name} has no key {key} (--config {config_path})")
                    return tomllib.loads(doc["data"][key]), doc["data"][key]
            raise SystemExit(f"no ConfigMap {name} in the manifest")
    raise SystemExit(f"--config {config_path} is not in a mounted ConfigMap")


def policy(path: str) -> list[str]:
    docs = load(path)
    problems: list[str] = []
    workloads = [d for d in docs if d.get("kind") in WORKLOADS]
    if not workloads:
        return ["no workload (Deployment, ...) in the manifest"]
    for doc in workloads:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        template = pod_spec(doc)
        spec = template["spec"]
        pod_sc = spec.get("securityContext", {})
        containers = spec.get("containers", []) + spec.get("initContainers", [])
        for c in containers:
            at = f"{where} container {c['name']}"
            sc = c.get("securityContext", {})

            def setting(key: str):
                return sc.get(key, pod_sc.get(key))

            if setting("runAsNonRoot") is not True:
                problems.append(f"{at}: runAsNonRoot is not true")
            uid = setting("runAsUser")
            if not isinstance(uid, int) or uid == 0:
                problems.append(f"{at}: runAsUser is not a non-zero uid ({uid!r})")
            if (setting("seccompProfile") or {}).get("type") != "RuntimeDefault":
                problems.append(f"{at}: seccompProfile is not RuntimeDefault")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: readOnlyRootFilesystem is not true")
            if sc.get("privileged"):
                problems.append(f"{at}: privileged")
            if "ALL" not in (sc.get("capabilities") or {}).get("drop", []):
                problems.append(f"{at}: capabilities do not drop ALL")
            if (sc.get("capabilities") or {}).get("add"):
                problems.append(f"{at}: capabilities added")
            image = c.get("image", "")
            tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
            if "@sha256:" not in image and tag in ("", "latest"):
                problems.append(f"{at}: image {image!r} has no version tag")

        config, _ = config_of(docs, template)
        server = config.get("server", {})
        if "admin_listen" not in server:
            problems.append(f"{where}: the config sets no server.admin_listen: /metrics would be public")
            continue
        public = port_of(server.get("listen", "0.0.0.0:8080"))
        admin = port_of(server["admin_listen"])
        labels = template["metadata"].get("labels", {})
        named = {p.get("name"): p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}

        def number(port) -> int | None:
            return named.get(port) if isinstance(port, str) else port

        for svc in (d for d in docs if d.get("kind") == "Service"):
            selector = svc["spec"].get("selector", {})
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                for p in svc["spec"].get("ports", []):
                    if number(p.get("targetPort", p.get("port"))) == admin:
                        problems.append(f"Service/{svc['metadata']['name']}: exposes the admin port {admin}")

        policies = [
            d for d in docs
            if d.get("kind") == "NetworkPolicy"
            and all(labels.get(k) == v for k, v in d["spec"]["podSelector"].get("matchLabels", {}).items())
            and "Ingress" in d["spec"].get("policyTypes", ["Ingress"])
        ]
        if not policies:
            problems.append(f"{where}: no NetworkPolicy restricts ingress to its pods")
            continue
        public_allowed = False
        for np in policies:
            for rule in np["spec"].get("ingress", []):
                ports = [number(p.get("port")) for p in rule.get("ports", [])]
                peers = rule.get("from", [])
                if not ports or admin in ports:
                    scoped = peers and all(
                        "ipBlock" not in p and p.get("namespaceSelector") and p.get("podSelector")
                        and (p["namespaceSelector"].get("matchLabels") or p["namespaceSelector"].get("matchExpressions"))
                        and (p["podSelector"].get("matchLabels") or p["podSelector"].get("matchExpressions"))
                        for p in peers
                    )
                    if not scoped:
                        problems.append(
                            f"NetworkPolicy/{np['metadata']['name']}: a rule opens the admin port {admin} "
                            "to more than the scraper's pods (needs namespaceSelector and podSelector)"
                        )
                if not ports or public in ports:
                    public_allowed = True
        if not public_allowed:
            problems.append(f"{where}: no NetworkPolicy rule lets the public port {public} in")
    return problems


def extract_config(path: str, outdir: str) -> None:
    docs = load(path)
    out = Path(outdir)
    workload = next(d for d in docs if d.get("kind") in WORKLOADS)
    template = pod_spec(workload)
    _, text = config_of(docs, template)
    spec = template["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in spec["containers"][0].get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        mount_path = mount["mountPath"].rstrip("/")
        local = out / mount_path.lstrip("/")
        local.mkdir(parents=True, exist_ok=True)
        for item in secret.get("items", []):
            # Distinct per item: the service refuses one secret configured twice.
            value = f"vltg_ci_stand_in_for_{item['key'].replace('-', '_')}_0123456789"
            (local / item["path"]).write_text(value + "\n")
        text = text.replace(mount_path + "/", str(local) + "/")
    config = out / "config.toml"
    config.write_text(text)
    print(config)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "policy":
        problems = policy(sys.argv[2])
        for p in problems:
            print(f"{sys.argv[2]}: {p}", file=sys.stderr)
        if problems:
            print(f"manifest policy: FAILED ({len(problems)} problems)", file=sys.stderr)
            return 1
        print(f"manifest policy: ok ({sys.argv[2]})")
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "extract-config":
        extract_config(sys.argv[2], sys.argv[3])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
