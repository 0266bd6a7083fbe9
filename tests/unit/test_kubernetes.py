"""deploy/kubernetes/ checked without a cluster: rendered like `kubectl kustomize`, validated against the Kubernetes
API schemas bundled in `kubernetes-validate`, and held to the project's rules (replicas, probes, resources,
disruption budgets, secrets, the provisioning Job, lag autoscaling bounded by partitions)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from shared.topics import Topics, topic_access
from tests.support.kustomize import pod_specs, render

ROOT = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.31.0"
CONSUMERS = ("aggregator", "publisher", "mapping")
SERVICES = (*CONSUMERS, "gateway")
SECRET_SUFFIXES = ("PASSWORD", "SECRET", "_API_TOKEN", "ENCRYPTION_KEYS", "DATABASE_URL", "DATABASE_ADMIN_URL")
CRDS = {"keda.sh/v1alpha1"}
"""KEDA's custom resources: not in the bundled schemas; checked field by field below."""


@pytest.fixture(scope="module", params=["base", "overlays/production"])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(ROOT / request.param)


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_every_builtin_object_is_valid_for_the_kubernetes_api(rendered: list[dict[str, Any]]) -> None:
    checked = 0
    for o in rendered:
        if o["apiVersion"] in CRDS:
            continue
        kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked >= 15


def test_a_broken_manifest_is_refused() -> None:
    deployment = find(render(ROOT / "base"), "Deployment", "aggregator")
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_runs_replicated_with_probes_resources_and_a_disruption_budget(
    rendered: list[dict[str, Any]], service: str
) -> None:
    deployment = find(rendered, "Deployment", service)
    assert deployment["spec"]["replicas"] >= 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", f"services.{service}"]
    assert importlib.util.find_spec(f"services.{service}.__main__") is not None
    port = next(int(e["value"]) for e in container["env"] if e["name"] == "HTTP_PORT")
    assert {"name": "http", "containerPort": port} in container["ports"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    budget = find(rendered, "PodDisruptionBudget", service)
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["maxUnavailable"] < deployment["spec"]["replicas"]
    service_object = find(rendered, "Service", service)
    assert service_object["spec"]["selector"].items() <= labels.items()


def test_secrets_come_from_secret_objects_only(rendered: list[dict[str, Any]]) -> None:
    secretive = []
    for o in rendered:
        for pod in pod_specs(o):
            for container in pod["containers"]:
                for env in container.get("env", []):
                    if env["name"].endswith(SECRET_SUFFIXES):
                        secretive.append(env["name"])
                        assert "secretKeyRef" in env.get("valueFrom", {}), f"{o['metadata']['name']}: {env['name']}"
        if o["kind"] == "ConfigMap":
            assert not [k for k in o["data"] if k.endswith(SECRET_SUFFIXES)], o["metadata"]["name"]
    assert {"DATABASE_URL", "KAFKA_SASL_PASSWORD", "TOKEN_ENCRYPTION_KEYS", "INTERNAL_API_TOKEN"} <= set(secretive)
    assert not [o for o in rendered if o["kind"] == "Secret"], "secrets are created outside the repository"


def test_database_provisioning_is_a_job_and_the_only_holder_of_the_admin_dsn(rendered: list[dict[str, Any]]) -> None:
    job = find(rendered, "Job", "db-provision")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "shared.provision"]
    holders = {
        o["metadata"]["name"]
        for o in rendered
        for pod in pod_specs(o)
        for c in pod["containers"]
        for e in c.get("env", [])
        if e["name"] == "DATABASE_ADMIN_URL"
    }
    assert holders == {"db-provision"}


def test_each_consumer_scales_on_the_lag_of_every_group_and_topic_it_reads(rendered: list[dict[str, Any]]) -> None:
    topics = Topics("")
    access = topic_access(topics)
    partitions = int(find(rendered, "ConfigMap", "procore-publishing-common")["data"]["KAFKA_TOPIC_PARTITIONS"])
    for service in CONSUMERS:
        scaled = find(rendered, "ScaledObject", service)
        assert scaled["spec"]["scaleTargetRef"]["name"] == service
        triggers = scaled["spec"]["triggers"]
        assert {t["type"] for t in triggers} == {"kafka"}
        read = {(t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in triggers}
        assert {group for group, _ in read} == set(access[service].groups)
        assert {topic for _, topic in read} == set(access[service].consumes)
        for t in triggers:
            assert t["metadata"]["allowIdleConsumers"] == "false"
            auth = find(rendered, "TriggerAuthentication", t["authenticationRef"]["name"])
            assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} >= {"username", "password"}
        # A replica beyond the partition count would own no partition: it could never work.
        assert 2 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"] <= partitions
    assert find(rendered, "HorizontalPodAutoscaler", "gateway")["spec"]["scaleTargetRef"]["name"] == "gateway"


def test_production_pins_its_image_and_namespace() -> None:
    objects = render(ROOT / "overlays" / "production")
    images = {c["image"] for o in objects for pod in pod_specs(o) for c in pod["containers"]}
    assert len(images) == 1
    assert not images.pop().endswith(":local")
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"procore-publishing"}
