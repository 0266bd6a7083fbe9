"""Renders a Kustomize directory the way `kubectl kustomize` does, for the subset deploy/kubernetes uses.

Supported: `resources` (files and directories), `namespace`, `labels` (metadata only), `images`, `replicas` and
`patches` given as strategic-merge files (maps merged key by key, lists of named items merged by `name`, other
lists replaced). Anything else in a kustomization.yaml is refused, so the renderer never silently ignores a field
kubectl would apply.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "replicas", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass"}

Object = dict[str, Any]


def load_documents(path: Path) -> list[Object]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(directory: Path) -> list[Object]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise ValueError(f"{directory}: kustomization fields this renderer does not apply: {sorted(unknown)}")
    objects: list[Object] = []
    for resource in spec.get("resources", []):
        target = (directory / resource).resolve()
        objects.extend(render(target) if target.is_dir() else load_documents(target))
    for patch in spec.get("patches", []):
        if set(patch) != {"path"}:
            raise ValueError(f"{directory}: only file patches are supported, got {patch}")
        for document in load_documents(directory / patch["path"]):
            apply_patch(objects, document)
    for image in spec.get("images", []):
        set_image(objects, image)
    for replicas in spec.get("replicas", []):
        (target,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == replicas["name"]]
        target["spec"]["replicas"] = replicas["count"]
    for label in spec.get("labels", []):
        if label.get("includeSelectors") or label.get("includeTemplates"):
            raise ValueError("only metadata labels are supported")
        for o in objects:
            o["metadata"].setdefault("labels", {}).update(label["pairs"])
    if "namespace" in spec:
        for o in objects:
            if o["kind"] not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = spec["namespace"]
    return objects


def apply_patch(objects: list[Object], patch: Object) -> None:
    matches = [
        o
        for o in objects
        if o["kind"] == patch["kind"]
        and o["metadata"]["name"] == patch["metadata"]["name"]
        and o["apiVersion"] == patch["apiVersion"]
    ]
    if len(matches) != 1:
        raise ValueError(f"patch {patch['kind']}/{patch['metadata']['name']} matches {len(matches)} objects")
    merge(matches[0], patch)


def merge(target: Object, patch: Object) -> None:
    for key, value in patch.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merge(current, value)
        elif isinstance(value, list) and isinstance(current, list) and _named(value) and _named(current):
            by_name = {item["name"]: item for item in current}
            for item in value:
                if item["name"] in by_name:
                    merge(by_name[item["name"]], item)
                else:
                    current.append(copy.deepcopy(item))
        else:
            target[key] = copy.deepcopy(value)


def _named(items: list[Any]) -> bool:
    return all(isinstance(i, dict) and "name" in i for i in items)


def pod_specs(o: Object) -> list[Object]:
    if o["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
        return [o["spec"]["template"]["spec"]]
    return []


def set_image(objects: list[Object], image: Object) -> None:
    new = f"{image.get('newName', image['name'])}:{image['newTag']}" if "newTag" in image else image["newName"]
    for o in objects:
        for pod in pod_specs(o):
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = new
