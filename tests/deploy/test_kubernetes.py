"""The Kubernetes manifests: valid, complete, and safe to run.

Validity is ``kubernetes-validate --strict`` (through its Python API, the same schemas),
against Kubernetes 1.29 (the first release with native sidecars on by default) and the
newest release it knows; each kustomization is rendered first with kustomize (the one in
kubectl), and every file is also validated on its own. ServiceMonitor and PodMonitor are
CRDs that kubernetes-validate has no schema for: they are validated against the strict
subset schemas in ``monitoring_schemas.py`` instead.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from app.settings import Settings
from tests.deploy.monitoring_schemas import SCHEMAS as MONITORING_SCHEMAS
from tests.deploy.tooling import (
    KUBERNETES,
    gateway_containers,
    in_ci,
    kustomizations,
    load_all,
    manifest_files,
    pod_specs,
    render,
    require_tool,
    run,
)

try:
    import kubernetes_validate
except ImportError:  # a developer's machine without the dev extra; CI must have it
    if in_ci():
        raise
    pytest.skip("kubernetes-validate is not installed (the dev extra)", allow_module_level=True)

VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
BASE, SIDECAR = KUBERNETES / "base", KUBERNETES / "sidecar"


def validate(obj: dict[str, Any], version: str) -> None:
    """Raises when ``obj`` breaks its schema; an unknown kind is an error, not a warning."""
    schema = (
        MONITORING_SCHEMAS.get(obj["kind"]) if obj["apiVersion"].startswith("monitoring.") else None
    )
    if schema is not None:
        jsonschema.validate(obj, schema)
        return
    kubernetes_validate.validate(obj, version, strict=True)


def rendered(directory: Path) -> list[dict[str, Any]]:
    objects = render(directory)
    assert objects, f"{directory} renders to nothing"
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


# ---- validity -------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("directory", kustomizations(), ids=lambda p: p.name)
def test_rendered_kustomization_is_valid(directory: Path, version: str) -> None:
    for obj in rendered(directory):
        validate(obj, version)


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(KUBERNETES)))
def test_each_file_is_valid_on_its_own(path: Path) -> None:
    objects = load_all(path.read_text(encoding="utf-8"))
    assert objects
    for obj in objects:
        validate(obj, VERSIONS[-1])


def test_the_command_line_tool_agrees(tmp_path: Path) -> None:
    """`kubernetes-validate --strict` itself, on every rendered kustomization and file. It
    exits 0 on a kind it has no schema for (a warning): only the two CRDs may be that."""
    tool = require_tool("kubernetes-validate", "pip install kubernetes-validate (the dev extra)")
    files = [str(p) for p in manifest_files()]
    for directory in kustomizations():
        out = tmp_path / f"{directory.name}.yaml"
        out.write_text(yaml.safe_dump_all(render(directory)), encoding="utf-8")
        files.append(str(out))
    result = run([tool, "--strict", *files])
    assert result.returncode == 0, result.stdout + result.stderr
    unknown = re.findall(r"Couldn't find schema for kind (\w+)", result.stdout + result.stderr)
    assert set(unknown) == set(MONITORING_SCHEMAS), unknown
    assert result.stdout.count(" passed for resource ") >= 15


def test_strict_validation_rejects_an_unknown_field() -> None:
    """The validator really is strict: a misspelt field in the Deployment fails it."""
    deployment = copy.deepcopy(by_kind(rendered(BASE), "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["perodSeconds"] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, VERSIONS[-1])


def test_monitor_schemas_reject_an_unknown_field() -> None:
    monitor = copy.deepcopy(by_kind(rendered(BASE), "ServiceMonitor")[0])
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor, VERSIONS[-1])
    monitor["spec"]["endpoints"][0] = {"port": "http", "interval": "30 seconds"}
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor, VERSIONS[-1])


@pytest.mark.parametrize("directory", kustomizations(), ids=lambda p: p.name)
def test_kustomization_references_resolve(directory: Path) -> None:
    """Without kustomize at hand this still proves that every file it names exists."""
    config = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    named = list(config.get("resources", []))
    for generator in config.get("configMapGenerator", []) + config.get("secretGenerator", []):
        named += generator.get("envs", []) + generator.get("files", [])
    assert named
    missing = [n for n in named if not (directory / n.split("=")[-1]).exists()]
    assert not missing, f"{directory.name}/kustomization.yaml names missing files: {missing}"


def test_every_manifest_file_is_used_or_an_example() -> None:
    used = set()
    for directory in kustomizations():
        config = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
        used |= {(directory / r).resolve() for r in config.get("resources", [])}
    unused = [p for p in manifest_files() if p.resolve() not in used and ".example." not in p.name]
    assert not unused, f"files no kustomization uses: {unused}"


# ---- the base: the list of objects --------------------------------------------


def test_base_has_every_object_the_standalone_deployment_needs() -> None:
    kinds = {o["kind"] for o in rendered(BASE)}
    expected = {
        "Deployment",
        "Service",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "ServiceAccount",
    }
    assert expected <= kinds


def test_base_objects_select_the_gateway_pods() -> None:
    objects = rendered(BASE)
    pod_labels = by_kind(objects, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    service = by_kind(objects, "Service")[0]
    selectors = [
        service["spec"]["selector"],
        by_kind(objects, "PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"],
        by_kind(objects, "NetworkPolicy")[0]["spec"]["podSelector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= pod_labels.items()
    monitor = by_kind(objects, "ServiceMonitor")[0]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    target = by_kind(objects, "HorizontalPodAutoscaler")[0]["spec"]["scaleTargetRef"]
    assert target["name"] == by_kind(objects, "Deployment")[0]["metadata"]["name"]


def test_base_secrets_come_from_the_secret_never_a_configmap() -> None:
    objects = rendered(BASE)
    assert not by_kind(objects, "Secret"), "no Secret with values belongs in git"
    container = gateway_containers(by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"])[0]
    refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e]
    assert {r["name"] for r in refs} == {"image-gateway-credentials"}
    assert all(r["optional"] for r in refs), "a missing key must disable a provider, not the pod"
    example = load_all((BASE / "secret.example.yaml").read_text(encoding="utf-8"))[0]
    assert {r["key"] for r in refs} <= set(example["stringData"])


def test_network_policy_allows_egress_only_to_dns_and_https() -> None:
    policy = by_kind(rendered(BASE), "NetworkPolicy")[0]["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    ports = [(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"]]
    assert sorted(ports) == [("TCP", 53), ("TCP", 443), ("UDP", 53)]
    https = next(r for r in policy["egress"] if any(p["port"] == 443 for p in r["ports"]))
    excepted = {c for peer in https["to"] for c in peer["ipBlock"].get("except", [])}
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= excepted


def test_network_policy_admits_only_labelled_callers_and_prometheus() -> None:
    policy = by_kind(rendered(BASE), "NetworkPolicy")[0]["spec"]
    [rule] = policy["ingress"]
    assert [p["port"] for p in rule["ports"]] == ["http"]
    peers = rule["from"]
    assert {"image-gateway.io/client": "true"} in [
        p.get("podSelector", {}).get("matchLabels") for p in peers
    ]
    assert {"kubernetes.io/metadata.name": "monitoring"} in [
        p.get("namespaceSelector", {}).get("matchLabels") for p in peers if "podSelector" not in p
    ]
    assert all(
        p.get("podSelector") or p.get("namespaceSelector", {}).get("matchLabels") for p in peers
    )


def test_sidecar_egress_is_dns_and_public_https_only() -> None:
    policy = by_kind(rendered(SIDECAR), "NetworkPolicy")[0]["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    ports = [(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"]]
    assert sorted(ports) == [("TCP", 53), ("TCP", 443), ("UDP", 53)]
    https = next(r for r in policy["egress"] if any(p["port"] == 443 for p in r["ports"]))
    excepted = {c for peer in https["to"] for c in peer["ipBlock"].get("except", [])}
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= excepted


# ---- every pod that runs the gateway --------------------------------------------------


GatewayPod = tuple[dict[str, Any], dict[str, Any], dict[str, str]]


@functools.cache
def gateway_pods() -> dict[str, GatewayPod]:
    """{where: (pod spec, gateway container, its settings from ConfigMaps)} per workload."""
    found = {}
    for directory in kustomizations():
        objects = rendered(directory)
        maps = {o["metadata"]["name"]: o["data"] for o in by_kind(objects, "ConfigMap")}
        for name, spec in pod_specs(objects):
            for container in gateway_containers(spec):
                env: dict[str, str] = {}
                for source in container.get("envFrom", []):
                    env.update(maps[source["configMapRef"]["name"]])
                found[f"{directory.name}/{name}"] = (spec, container, env)
    return found


WORKLOADS = ["base/image-gateway", "sidecar/thumbnailer"]


@pytest.fixture(params=WORKLOADS)
def gateway_pod(request: pytest.FixtureRequest) -> GatewayPod:
    return gateway_pods()[request.param]


def test_the_examples_that_run_the_gateway() -> None:
    assert sorted(gateway_pods()) == WORKLOADS


def test_probes_use_healthz_and_readyz(gateway_pod: GatewayPod) -> None:
    _spec, container, env = gateway_pod
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] in ("/healthz", "/readyz")
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in port_names
    assert int(env["IMAGE_GATEWAY_PORT"]) in port_names.values()


def test_security_context_is_locked_down(gateway_pod: GatewayPod) -> None:
    spec, container, _env = gateway_pod
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    for each in [*spec.get("initContainers", []), *spec["containers"]]:
        context = each["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, each["name"]
        assert context["readOnlyRootFilesystem"] is True, each["name"]
        assert context["capabilities"]["drop"] == ["ALL"], each["name"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts, "read-only root: uploads and multiprocess metrics need /tmp"
    assert spec["automountServiceAccountToken"] is False


def test_resources_have_requests_and_limits(gateway_pod: GatewayPod) -> None:
    spec, _, _ = gateway_pod
    for each in [*spec.get("initContainers", []), *spec["containers"]]:
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(each["resources"][bound]), (each["name"], bound)


def test_termination_grace_outlasts_the_longest_request(gateway_pod: GatewayPod) -> None:
    """SIGTERM comes after preStop; then the gateway drains for up to SHUTDOWN_GRACE_S
    (which must cover a whole request deadline) and uvicorn closes within 5 s more."""
    spec, container, env = gateway_pod
    fields = Settings.model_fields
    deadline = float(
        env.get("IMAGE_GATEWAY_REQUEST_TIMEOUT_S", fields["request_timeout_s"].default)
    )
    grace = float(env.get("IMAGE_GATEWAY_SHUTDOWN_GRACE_S", fields["shutdown_grace_s"].default))
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    pause = float(pre_stop[-1]) if pre_stop else 0.0
    assert grace > deadline
    assert spec["terminationGracePeriodSeconds"] > pause + grace + 5


def test_service_links_cannot_override_settings(gateway_pod: GatewayPod) -> None:
    """A Service named image-gateway makes Kubernetes inject IMAGE_GATEWAY_PORT=tcp://..."""
    spec, _, _ = gateway_pod
    assert spec["enableServiceLinks"] is False


# ---- the sidecar ----------------------------------------------------------------------


def test_sidecar_is_a_native_sidecar_the_app_calls_on_loopback() -> None:
    spec, gateway, env = gateway_pods()["sidecar/thumbnailer"]
    assert gateway in spec["initContainers"] and gateway["restartPolicy"] == "Always"
    assert gateway["startupProbe"]["httpGet"]["path"] == "/readyz", (
        "the app starts on a ready gateway"
    )
    app = spec["containers"][0]
    urls = [e["value"] for e in app["env"] if re.match(r"^https?://", e.get("value", ""))]
    assert urls == [f"http://127.0.0.1:{env['IMAGE_GATEWAY_PORT']}"]


def test_sidecar_secret_is_a_mounted_file() -> None:
    spec, gateway, env = gateway_pods()["sidecar/thumbnailer"]
    path = Path(env["IMAGE_GATEWAY_VENICE__API_KEY_FILE"])
    mount = next(m for m in gateway["volumeMounts"] if path.is_relative_to(m["mountPath"]))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert path.name in {item["path"] for item in volume["secret"]["items"]}


def test_sidecar_port_is_closed_to_other_pods() -> None:
    objects = rendered(SIDECAR)
    policy = by_kind(objects, "NetworkPolicy")[0]["spec"]
    gateway_rules = [
        r for r in policy["ingress"] if any(p["port"] == "gateway" for p in r["ports"])
    ]
    assert len(gateway_rules) == 1 and gateway_rules[0]["from"], "only Prometheus may scrape it"
    monitor = by_kind(objects, "PodMonitor")[0]["spec"]
    assert monitor["podMetricsEndpoints"][0]["port"] == "gateway"
