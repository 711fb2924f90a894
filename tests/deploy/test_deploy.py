"""Deployment files: every kustomize overlay renders (`kubectl kustomize`) and validates against the
Kubernetes schemas (kubernetes-validate, offline, strict), with the hardening and probes operators rely
on; docker-compose.yml, interpolated as Compose does, validates against the Compose Specification's
JSON schema (vendored in tests/deploy/: no Docker engine or docker-compose needed);
the model registries both ship parse as the mesh parses them; the Grafana dashboard and Prometheus
config name only metrics and ports the services really have. Nothing here builds an image or starts a
cluster: README "Deploying" says what was and was not run."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client import REGISTRY

from services.common.registry import parse_registry
from services.gateway.config import GatewaySettings
from services.inference.config import InferenceSettings
from services.orchestrator.config import OrchestratorSettings
from services.store.config import StoreSettings
from tests.support.mesh import ROOT, scripted_mesh

KUSTOMIZE = ROOT / "deploy" / "kustomize"
OVERLAYS = ("cpu", "gpu")
SETTINGS = {
    "gateway": GatewaySettings,
    "orchestrator": OrchestratorSettings,
    "inference": InferenceSettings,
    "store": StoreSettings,
}
# The services' own defaults: the manifests and Compose must agree with what the code listens on.
GRPC_PORTS = {name: cls.model_fields["port"].default for name, cls in SETTINGS.items() if name != "gateway"}
METRICS_PORTS = {name: cls.model_fields["metrics_port"].default for name, cls in SETTINGS.items()}
KUBERNETES_VERSION = "1.33.0"
# The Compose Specification's JSON schema; where it comes from: tests/deploy/README.md.
COMPOSE_SCHEMA = ROOT / "tests" / "deploy" / "compose-spec.json"


def tool(name: str) -> str:
    """The tool on PATH; without it the check is skipped, saying so (CI's .ci/run insists on it)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed: the kustomize overlays are not rendered here")
    return path


def render(overlay: str) -> list[dict[str, Any]]:
    output = subprocess.run(
        [tool("kubectl"), "kustomize", str(KUSTOMIZE / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def of_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    resources = render(overlay)
    for resource in resources:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    kinds = {r["kind"] for r in resources}
    assert {
        "Deployment",
        "Service",
        "ServiceAccount",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "Job",
        "ConfigMap",
    } <= kinds
    assert all(r["metadata"].get("namespace") == "llm-mesh" for r in resources)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_is_hardened_probed_and_named(overlay: str) -> None:
    resources = render(overlay)
    deployments = of_kind(resources, "Deployment")
    services = of_kind(resources, "Service")
    expected = {"gateway", "orchestrator", "inference", "store"} | (
        {"inference-gpu"} if overlay == "gpu" else set()
    )
    assert set(deployments) == expected | {"redis"}
    accounts = of_kind(resources, "ServiceAccount")
    for name, deployment in deployments.items():
        if name == "redis":  # not ours: hardened and probed all the same, below
            continue
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == name and name in accounts
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert "readinessProbe" in container and "livenessProbe" in container
        if name != "gateway":  # built-in gRPC probes on the gRPC port
            port = container["readinessProbe"]["grpc"]["port"]
            assert port == container["livenessProbe"]["grpc"]["port"] == GRPC_PORTS[name.split("-")[0]]
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(METRICS_PORTS[name.split("-")[0]])
        # each Service names its ports grpc / http / metrics
        assert {p["name"] for p in services[name]["spec"]["ports"]} == {
            "http" if name == "gateway" else "grpc",
            "metrics",
        }
        assert name in of_kind(resources, "PodDisruptionBudget")
    redis = deployments["redis"]["spec"]["template"]["spec"]
    (container,) = redis["containers"]
    assert redis["securityContext"]["runAsNonRoot"] is True and redis["serviceAccountName"] in accounts
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"] and "readinessProbe" in container and "livenessProbe" in container
    assert {p["port"] for p in services["redis"]["spec"]["ports"]} == {6379}
    autoscaled = of_kind(resources, "HorizontalPodAutoscaler")
    assert autoscaled["gateway"]["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert autoscaled["orchestrator"]["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert (
        autoscaled["inference"]["spec"]["metrics"][0]["pods"]["metric"]["name"]
        == "llmmesh_inference_requests_waiting"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_auth_is_on_and_secrets_come_from_secrets(overlay: str) -> None:
    resources = render(overlay)
    deployments = of_kind(resources, "Deployment")
    gateway_env = {
        e["name"]: e for e in deployments["gateway"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert gateway_env["GATEWAY_AUTH_ENABLED"]["value"] == "true"
    assert gateway_env["GATEWAY_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "llm-mesh-secrets"
    store_env = {
        e["name"]: e for e in deployments["store"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert store_env["STORE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "llm-mesh-secrets"
    assert store_env["STORE_MIGRATE_ON_START"]["value"] == "false", "the migration Job owns the schema"
    (migrate,) = of_kind(resources, "Job").values()
    assert migrate["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    text = yaml.safe_dump_all(resources)
    for name, deployment in deployments.items():
        if name == "redis":
            continue
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        secret = env["MESH_SERVICE_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert (secret["name"], secret["key"]) == ("llm-mesh-secrets", "MESH_SERVICE_TOKEN"), name
    assert "kind: Secret" not in text, "secrets are referenced, never shipped"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_shipped_registry_parses_and_its_pools_have_services(overlay: str) -> None:
    resources = render(overlay)
    (models,) = [
        c for name, c in of_kind(resources, "ConfigMap").items() if name.startswith("llm-mesh-models")
    ]
    registry = parse_registry(yaml.safe_load(models["data"]["models.yaml"]))
    services = of_kind(resources, "Service")
    for pool, address in registry.pools.items():
        host, port = address.rsplit(":", 1)
        assert host in services, f"pool {pool} points at a Service the overlay has"
        assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}
    deployments = of_kind(resources, "Deployment")
    if overlay == "gpu":
        pod = deployments["inference-gpu"]["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert pod["tolerations"][0]["key"] == "nvidia.com/gpu" and pod["nodeSelector"]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["INFERENCE_POOL"] == "gpu" and registry.models["qwen2.5-1.5b"].pool == "gpu"
        assert registry.models["qwen2.5-1.5b"].backend == "vllm"


def test_network_policies_admit_only_the_mesh_edges() -> None:
    policies = of_kind(render("cpu"), "NetworkPolicy")
    assert policies["llm-mesh-default-deny"]["spec"]["policyTypes"] == ["Ingress"]

    def sources(name: str) -> set[str]:
        (rule,) = policies[name]["spec"]["ingress"]
        return {peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in rule["from"]}

    assert sources("orchestrator-from-gateway") == {"gateway"}
    assert sources("inference-from-orchestrator") == {"orchestrator", "gateway"}
    assert sources("store-from-mesh") == {"orchestrator", "gateway"}
    assert sources("redis-from-gateway") == {"gateway"}


def interpolate(text: str, env: dict[str, str]) -> str:
    """A Compose file value with its variables substituted as the Compose Specification says
    (12-interpolation.md): $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error},
    ${VAR:+other}, ${VAR+other}, nested in the default; $$ is a literal $. Anything else is refused,
    so a construct Compose would read differently fails the test rather than passing unread."""
    out = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            depth, end = 1, i + 2
            while end < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                end += 1
            if depth:
                raise ValueError(f"unclosed ${{ in {text!r}")
            out.append(_substitute(text[i + 2 : end - 1], env))
            i = end
        elif name := re.match(r"[_a-zA-Z][_a-zA-Z0-9]*", text[i + 1 :]):
            out.append(env.get(name[0], ""))
            i += 1 + name.end()
        else:  # not a variable: Compose keeps the $
            out.append("$")
            i += 1
    return "".join(out)


def _substitute(expression: str, env: dict[str, str]) -> str:
    parsed = re.fullmatch(r"([_a-zA-Z][_a-zA-Z0-9]*)(?:(:?[-?+])(.*))?", expression, re.DOTALL)
    if parsed is None:
        raise ValueError(f"Compose does not interpolate ${{{expression}}}")
    name, operator, argument = parsed.groups()
    value = env.get(name)
    if operator is None:
        return value or ""
    unset = value is None or (operator.startswith(":") and value == "")
    if operator.endswith("-"):
        return interpolate(argument, env) if unset else str(value)
    if operator.endswith("?"):
        if unset:
            raise ValueError(f"required variable {name} is missing: {interpolate(argument, env)}")
        return str(value)
    return "" if unset else interpolate(argument, env)


def interpolated(node: Any, env: dict[str, str]) -> Any:
    """Every string value of a parsed Compose file interpolated (keys are not, as in Compose)."""
    if isinstance(node, dict):
        return {key: interpolated(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolated(value, env) for value in node]
    return interpolate(node, env) if isinstance(node, str) else node


def compose_config(models: str, text: str | None = None) -> dict[str, Any]:
    """docker-compose.yml (or text) as Compose reads it: YAML anchors and merge keys resolved, then
    variables interpolated with only LLM_MESH_MODELS set."""
    document = yaml.safe_load(text if text is not None else (ROOT / "docker-compose.yml").read_text())
    config: dict[str, Any] = interpolated(document, {"LLM_MESH_MODELS": models})
    return config


def validate_compose(config: dict[str, Any]) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    # The schema names draft 7 by a URL jsonschema does not recognise (https, no trailing #).
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER).validate(
        config
    )


def test_interpolation_follows_the_compose_specification() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("a-${SET}-$SET-${UNSET}-$$SET", env) == "a-x-x--$SET"
    assert interpolate("${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d}", env) == "d d  d"
    assert interpolate("${UNSET:-${SET:-no}} ${SET:+alt} ${EMPTY:+alt} ${EMPTY+alt}", env) == "x alt  alt"
    assert interpolate("${SET:?needed} cost $5", env) == "x cost $5"
    with pytest.raises(ValueError, match="required variable UNSET is missing: set it"):
        interpolate("${UNSET:?set it}", env)
    with pytest.raises(ValueError, match="does not interpolate"):
        interpolate("${SET/x/y}", env)


@pytest.mark.parametrize("models", ["cpu", "gpu"])
def test_compose_file_validates(models: str) -> None:
    config = compose_config(models)
    validate_compose(config)
    services = config["services"]
    assert {
        "postgres",
        "store",
        "inference",
        "orchestrator",
        "gateway",
        "prometheus",
        "inference-gpu",
    } <= set(services)
    for name in ("postgres", "store", "inference", "orchestrator", "gateway", "inference-gpu"):
        assert "healthcheck" in services[name], name
    for name in ("store", "inference", "orchestrator", "gateway"):
        assert services[name]["command"] == ["serve", name]
        assert services[name]["read_only"] is True
        mounted = ROOT / services[name]["volumes"][0].split(":")[0]
        assert mounted.resolve() == KUSTOMIZE / "overlays" / models / "models.yaml"
        parse_registry(yaml.safe_load(mounted.read_text()))
    assert services["inference-gpu"]["environment"]["INFERENCE_POOL"] == "gpu"
    assert (
        services["inference-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    )


# What a typo or a wrong shape looks like, and where the schema must report it.
BROKEN_COMPOSE: dict[str, tuple[str, str, list[str]]] = {
    "a misspelled service key": (
        '    command: ["serve", "gateway"]',
        '    comand: ["serve", "gateway"]',
        ["services", "gateway"],
    ),
    "a misspelled top-level key": ("\nvolumes:\n", "\nvolume:\n", []),
    "ports as one string": ('      - "8080:8080"', '      "8080:8080"', ["services", "gateway", "ports"]),
    "an unknown depends_on condition": (
        "      orchestrator:\n        condition: service_healthy",
        "      orchestrator:\n        condition: service_ready",
        ["services", "gateway", "depends_on"],
    ),
    "a health check interval as a number": (
        "      interval: 5s",
        "      interval: 5",
        ["services", "postgres", "healthcheck", "interval"],
    ),
}


@pytest.mark.parametrize("broken", BROKEN_COMPOSE)
def test_the_compose_check_catches_a_broken_file(broken: str) -> None:
    original, replacement, where = BROKEN_COMPOSE[broken]
    text = (ROOT / "docker-compose.yml").read_text()
    assert original in text, f"the mutation no longer applies to docker-compose.yml: {original!r}"
    with pytest.raises(jsonschema.ValidationError) as invalid:
        validate_compose(compose_config("cpu", text.replace(original, replacement, 1)))
    assert list(invalid.value.absolute_path) == where, invalid.value.message


def test_prometheus_scrapes_every_service_on_its_metrics_port() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert {f"{name}:{port}" for name, port in METRICS_PORTS.items()} <= targets


async def test_the_dashboard_names_only_metrics_the_services_publish(tmp_path: Path) -> None:
    dashboard = json.loads((KUSTOMIZE / "base" / "dashboards" / "llm-mesh.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    # metric names only: label lists (`by (...)`) and matchers (`{...}`) are taken out first
    stripped = [re.sub(r"by \([^)]*\)|\{[^}]*\}", "", expr) for expr in expressions]
    referenced = set(re.findall(r"\b((?:llmmesh|grpc)_[a-z_]+|vllm:[a-z_]+)", " ".join(stripped)))
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db") as gateway:
        assert (await gateway.client.post("/api/v1/ai/generate", json={"prompt": "hello"})).status_code == 200
        # collected from another thread, as the metrics endpoint does (the store counts its queue then)
        families = await asyncio.to_thread(lambda: {family.name for family in REGISTRY.collect()})
    published = {
        name
        for family in families
        for name in (family, f"{family}_total", f"{family}_bucket", f"{family}_count", f"{family}_sum")
    }
    assert referenced, "the dashboard queries our metrics"
    assert referenced <= published, sorted(referenced - published)
    # and every family the services publish is on the dashboard, except the few left to ad-hoc queries
    ours = {f for f in families if f.startswith("llmmesh_")}
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in referenced}
    ad_hoc = {
        "llmmesh_http_requests_in_flight",
        "llmmesh_websocket_connections",
        "llmmesh_socketio_connections",
    }
    assert ours - shown <= ad_hoc, sorted(ours - shown)
