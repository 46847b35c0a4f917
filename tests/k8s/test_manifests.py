"""Offline checks of the Kubernetes manifests in k8s/ and of the Dockerfile.

No cluster is needed: custom resources (RayJob, RayCluster) are validated against the KubeRay
CRDs of a pinned release (folder from ORCHESTRATOR_K8S_CRDS, default ../shared/k8s-crds beside
the checkout), strictly, so that a misspelled field fails here instead of being dropped by the
API server; native kinds are validated strictly with kubernetes-validate's bundled schemas.
The rest are the house rules: pinned images and Ray versions, no inlined secrets, no exposed
Ray ports, hardened containers with resource limits, and a cluster spec that validates; and the
security rules: NetworkPolicies evaluated pod by pod (each pod reaches only what it needs, by
name and port), the least-privilege MLflow and PostgreSQL accounts, the driver-only secrets, the
PostgreSQL disruption budget and backup, and an image built from a lock file with hashes.
"""

from __future__ import annotations

import configparser
import importlib.util
import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
SPEC = K8S / "spec" / "layers_cluster.yaml"
SECRETS_EXAMPLE = K8S / "secrets.example.env"
MLFLOW_AUTH_INI = K8S / "mlflow" / "basic_auth.ini"
BOOTSTRAP_SCRIPT = K8S / "mlflow" / "bootstrap_sweep_user.py"
IMAGE_LOCK = REPO / "requirements" / "image.lock"
IMAGE_LOCK_INPUT = REPO / "requirements" / "image.in"
CRDS = Path(os.environ.get("ORCHESTRATOR_K8S_CRDS") or REPO.parent / "shared" / "k8s-crds")

RAY_KINDS = {"RayJob": "rayjobs.ray.io", "RayCluster": "rayclusters.ray.io"}
CREDENTIAL_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.IGNORECASE)
CREDENTIALS_IN_URI = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
RAY_INTERNAL_PORTS = {8265, 10001}  # dashboard / Jobs API, Ray client
# Containers allowed a writable root filesystem, with the reason; none so far.
WRITABLE_ROOT_FS: dict[str, str] = {}


def _yaml_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def _load_documents() -> list[tuple[str, dict]]:
    documents = []
    for path in _yaml_files():
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc:
                name = doc.get("metadata", {}).get("name", "?")
                documents.append((f"{path.relative_to(K8S)}#{i} {doc['kind']}/{name}", doc))
    return documents


DOCUMENTS = _load_documents()
RESOURCES = [(id_, doc) for id_, doc in DOCUMENTS if doc["kind"] != "Kustomization"]
RAY_RESOURCES = [(id_, doc) for id_, doc in RESOURCES if doc["kind"] in RAY_KINDS]
NATIVE_RESOURCES = [(id_, doc) for id_, doc in RESOURCES if doc["kind"] not in RAY_KINDS]
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())


def _ids(pairs: list[tuple[str, Any]]) -> list[str]:
    return [id_ for id_, _ in pairs]


def _of_kind(kind: str) -> list[dict]:
    return [doc for _, doc in RESOURCES if doc["kind"] == kind]


# --- Walking the manifests --------------------------------------------------------------------


def _cluster_spec(doc: dict) -> dict:
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


def pod_specs(doc: dict) -> Iterator[tuple[str, dict]]:
    """Every pod spec a resource creates, with a label saying where it is."""
    kind, spec = doc["kind"], doc.get("spec", {})
    if kind == "Pod":
        yield "pod", spec
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        yield "template", spec["template"]["spec"]
    elif kind == "CronJob":
        yield "jobTemplate", spec["jobTemplate"]["spec"]["template"]["spec"]
    elif kind in RAY_KINDS:
        cluster = _cluster_spec(doc)
        yield "head", cluster["headGroupSpec"]["template"]["spec"]
        for group in cluster.get("workerGroupSpecs", []):
            yield f"worker group {group['groupName']}", group["template"]["spec"]
        if kind == "RayJob" and "submitterPodTemplate" in spec:
            yield "submitter", spec["submitterPodTemplate"]["spec"]


def containers(doc: dict) -> Iterator[tuple[str, dict, dict]]:
    """(label, container, its pod spec) for every container and initContainer, and KubeRay's
    autoscaler sidecar (configured through autoscalerOptions, in the head pod)."""
    for where, pod in pod_specs(doc):
        for field in ("initContainers", "containers"):
            for container in pod.get(field, []):
                yield f"{where} {field[:-1]} {container.get('name')}", container, pod
    if doc["kind"] in RAY_KINDS and _cluster_spec(doc).get("enableInTreeAutoscaling"):
        cluster = _cluster_spec(doc)
        options = cluster.get("autoscalerOptions", {})
        yield "autoscaler", {"name": "autoscaler", **options}, cluster["headGroupSpec"]["template"]["spec"]


def images(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                yield value
            else:
                yield from images(value)
    elif isinstance(node, list):
        for item in node:
            yield from images(item)


def env_vars(doc: dict) -> Iterator[tuple[str, dict]]:
    for where, container, _ in containers(doc):
        for var in container.get("env", []):
            yield where, var


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics; an empty selector selects everything."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _workload(kind: str, name: str) -> dict:
    (doc,) = [d for d in _of_kind(kind) if d["metadata"]["name"] == name]
    return doc


def _env(container: dict) -> dict[str, dict]:
    return {var["name"]: var for var in container.get("env", [])}


def _secret_key(var: dict | None) -> str | None:
    ref = (var or {}).get("valueFrom", {}).get("secretKeyRef")
    return ref["key"] if ref else None


def _secret_keys_of(container: dict, pod: dict) -> set[str]:
    """The Secret keys a container can read: through env, or volumes it mounts."""
    keys = {key for var in container.get("env", []) if (key := _secret_key(var))}
    mounted = {m["name"] for m in container.get("volumeMounts", [])}
    for volume in pod.get("volumes", []):
        if volume["name"] in mounted and "secret" in volume:
            keys |= {item["key"] for item in volume["secret"].get("items", [])} or {"*"}
        for source in volume.get("projected", {}).get("sources", []) if volume["name"] in mounted else []:
            if "secret" in source:
                keys |= {item["key"] for item in source["secret"].get("items", [])} or {"*"}
    return keys


def split_image(image: str) -> tuple[str, str | None]:
    name = image.split("@", 1)[0]
    repository, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:  # `host:port/repo` without a tag
        return name, None
    return repository, tag


def ray_version() -> Version:
    text = (REPO / "pyproject.toml").read_text()
    for quoted in re.findall(r"\"(ray(?:\[[^\]]*\])?\s*[<>=!~][^\"]*)\"", text):
        requirement = Requirement(quoted)
        if requirement.name == "ray" and "tune" in requirement.extras:
            bounds = [s.version for s in requirement.specifier if s.operator == ">="]
            assert bounds, f"pyproject.toml: {quoted!r} has no >= lower bound"
            return Version(bounds[0])
    raise AssertionError("pyproject.toml declares no ray[tune] dependency")


# --- Every file parses, and the kustomization lists everything ------------------------------


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_yaml_file_parses(path: Path) -> None:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert documents, f"{path}: no YAML document"


def _generated_files(name: str) -> dict[str, Path]:
    """The files of a configMapGenerator, by key."""
    (generator,) = [g for g in KUSTOMIZATION["configMapGenerator"] if g["name"] == name]
    files = {}
    for entry in generator["files"]:
        key, _, path = entry.rpartition("=")
        files[key or Path(path).name] = K8S / path
    return files


def test_kustomization_lists_every_manifest() -> None:
    manifests = {p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert set(KUSTOMIZATION["resources"]) == manifests
    assert KUSTOMIZATION["namespace"] == "orchestrator"
    generated = {g["name"]: g for g in KUSTOMIZATION["configMapGenerator"]}
    files = generated["sweep-spec"]["files"]
    assert files == ["layers_cluster.yaml=spec/layers_cluster.yaml"]
    # Custom resources mount it by its plain name: a hash suffix would not be rewritten there.
    assert generated["sweep-spec"]["options"]["disableNameSuffixHash"] is True
    assert set(_generated_files("mlflow-auth")) == {"basic_auth.ini", "bootstrap_sweep_user.py"}
    for name in generated:
        for path in _generated_files(name).values():
            assert path.is_file(), f"configMapGenerator {name}: {path} is missing"


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    """`kustomize build k8s` (or `kubectl kustomize k8s`): what `kubectl apply -k k8s/` sends."""
    kustomize, kubectl = shutil.which("kustomize"), shutil.which("kubectl")
    if not (kustomize or kubectl):
        pytest.skip("neither kustomize nor kubectl is installed")
    command = [kustomize, "build", str(K8S)] if kustomize else [kubectl, "kustomize", str(K8S)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_kustomize_renders_the_stack(rendered: list[dict]) -> None:
    by_name = {(doc["kind"], doc["metadata"]["name"]): doc for doc in rendered}
    assert by_name[("ConfigMap", "sweep-spec")]["data"] == {"layers_cluster.yaml": SPEC.read_text()}
    assert len(rendered) == len(RESOURCES) + len(KUSTOMIZATION["configMapGenerator"])
    # The MLflow ConfigMap gets a hashed name (a change rolls the pod), and the Deployment follows it.
    (auth,) = [d for d in rendered if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("mlflow-auth-")]
    assert auth["data"] == {key: path.read_text() for key, path in _generated_files("mlflow-auth").items()}
    volumes = by_name[("Deployment", "mlflow")]["spec"]["template"]["spec"]["volumes"]
    assert auth["metadata"]["name"] in {v.get("configMap", {}).get("name") for v in volumes}
    local = {entry["name"] for entry in KUSTOMIZATION.get("images", [])}
    for doc in rendered:
        assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "orchestrator"
        for image in images(doc):  # kustomize maps the local image names inside custom resources too
            assert split_image(image)[0] not in local, f"{doc['kind']}/{doc['metadata']['name']}: {image}"


def test_the_locally_built_image_is_mapped_to_a_registry() -> None:
    """Without kustomize at hand (the render test skips), check the mapping it would apply: every
    pod that runs this project's image (the Dockerfile's, named `orchestrator`) gets it from a registry."""
    local = {entry["name"]: entry for entry in KUSTOMIZATION.get("images", [])}
    ours = [(id_, image) for id_, doc in RESOURCES for image in images(doc) if split_image(image)[0] == "orchestrator"]
    assert ours, "no resource runs the orchestrator image"
    assert "/" in local["orchestrator"]["newName"], "kustomization must point `orchestrator` at a registry"


def test_every_resource_is_namespaced_to_orchestrator() -> None:
    for id_, doc in RESOURCES:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "orchestrator", id_


# --- Custom resources against the KubeRay CRDs ------------------------------------------------


@pytest.fixture(scope="module")
def crd_schemas() -> dict[str, dict]:
    if not CRDS.is_dir():
        pytest.skip(
            f"KubeRay CRDs not found at {CRDS}: set ORCHESTRATOR_K8S_CRDS to the folder holding "
            "ray.io_rayjobs.yaml and ray.io_rayclusters.yaml (the shared/k8s-crds folder beside the checkout)"
        )
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                versions = {v["name"]: v for v in doc["spec"]["versions"]}
                if "v1" in versions:
                    schemas[doc["spec"]["names"]["kind"]] = versions["v1"]["schema"]["openAPIV3Schema"]
    missing = sorted(set(RAY_KINDS) - set(schemas))
    assert not missing, f"{CRDS}: no v1 CRD for {missing}"
    return schemas


def undeclared_fields(value: Any, schema: dict, path: str = "") -> list[str]:
    """Paths in `value` that `schema` does not declare.

    Kubernetes drops unknown fields of a custom resource (or rejects them, with strict field
    validation), so a typo silently changes nothing. Objects whose schema declares `properties`
    may hold only those; maps (`additionalProperties`, e.g. labels or resource limits) have
    their values checked against the value schema; `x-kubernetes-preserve-unknown-fields`
    opts a subtree out.
    """
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    problems = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties is not None:
            for key, sub in value.items():
                if key in properties:
                    problems += undeclared_fields(sub, properties[key], f"{path}.{key}")
                else:
                    problems.append(f"{path}.{key}")
        elif isinstance(schema.get("additionalProperties"), dict):
            for key, sub in value.items():
                problems += undeclared_fields(sub, schema["additionalProperties"], f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems += undeclared_fields(item, schema["items"], f"{path}[{i}]")
    return problems


@pytest.mark.parametrize(("id_", "doc"), RAY_RESOURCES, ids=_ids(RAY_RESOURCES))
def test_custom_resource_matches_its_crd(id_: str, doc: dict, crd_schemas: dict[str, dict]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = crd_schemas[doc["kind"]]
    errors = [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(doc)
    ]
    assert not errors, f"{id_} is invalid against the KubeRay CRD:\n" + "\n".join(errors)
    unknown = undeclared_fields(doc, schema)
    assert not unknown, f"{id_} has fields the KubeRay CRD does not declare: {unknown}"
    # The CRD leaves metadata open; allow only what a manifest should set.
    assert set(doc["metadata"]) <= {"name", "namespace", "labels", "annotations"}, id_


def test_crd_declares_the_pod_templates(crd_schemas: dict[str, dict]) -> None:
    """The strict check reaches into pod templates only if the CRD spells them out."""
    for kind, schema in crd_schemas.items():
        spec = schema["properties"]["spec"]["properties"]
        cluster = spec["rayClusterSpec"]["properties"] if kind == "RayJob" else spec
        templates = [
            cluster["headGroupSpec"]["properties"]["template"],
            cluster["workerGroupSpecs"]["items"]["properties"]["template"],
        ]
        if kind == "RayJob":
            templates.append(spec["submitterPodTemplate"])
        for template in templates:
            pod = template["properties"]["spec"]
            container = pod["properties"]["containers"]["items"]
            assert "securityContext" in container["properties"], kind
            assert not pod.get("x-kubernetes-preserve-unknown-fields"), kind


def test_strict_check_catches_a_misspelled_field(crd_schemas: dict[str, dict]) -> None:
    doc = yaml.safe_load((K8S / "rayjob.yaml").read_text())
    head = doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["securityContxt"] = head.pop("securityContext")
    doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["metadata"]["labels"]["ok"] = "fine"
    assert undeclared_fields(doc, crd_schemas["RayJob"]) == [
        ".spec.rayClusterSpec.headGroupSpec.template.spec.containers[0].securityContxt"
    ]


# --- Native resources against the Kubernetes schemas -----------------------------------------


@pytest.mark.parametrize(("id_", "doc"), NATIVE_RESOURCES, ids=_ids(NATIVE_RESOURCES))
def test_native_resource_is_valid_kubernetes(id_: str, doc: dict) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.latest_version()
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(map(str, exc.absolute_path)) or "<root>"
        pytest.fail(f"{id_} is invalid for Kubernetes {version}: {where}: {exc.message}")


def test_rendered_stack_is_valid(rendered: list[dict], crd_schemas: dict[str, dict]) -> None:
    """What kustomize sends to the API server, each document strictly against its schema: the
    KubeRay CRDs for Ray kinds, Kubernetes' own for the rest (CronJob, PodDisruptionBudget and the
    generated ConfigMaps included)."""
    jsonschema = pytest.importorskip("jsonschema")
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.latest_version()
    problems = []
    for doc in rendered:
        id_ = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in RAY_KINDS:
            schema = crd_schemas[doc["kind"]]
            problems += [f"{id_}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(doc)]
            problems += [f"{id_}: undeclared {path}" for path in undeclared_fields(doc, schema)]
        else:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                problems.append(f"{id_}: {'.'.join(map(str, exc.absolute_path))}: {exc.message}")
    assert not problems, "\n".join(problems)
    assert {"CronJob", "PodDisruptionBudget", "NetworkPolicy", "RayJob", "RayCluster"} <= {d["kind"] for d in rendered}


# --- Versions and images ----------------------------------------------------------------------


def test_ray_versions_match_pyproject() -> None:
    version = ray_version()
    ray_images = [
        (id_, image)
        for id_, doc in RESOURCES
        for image in images(doc)
        if split_image(image)[0].endswith("rayproject/ray")
    ]
    for id_, image in ray_images:
        tag = split_image(image)[1] or ""
        assert Version(tag.split("-")[0]) == version, f"{id_}: {image} is not Ray {version}"
    for id_, doc in RAY_RESOURCES:
        assert Version(str(_cluster_spec(doc)["rayVersion"])) == version, f"{id_}: rayVersion"
    for image in KUSTOMIZATION.get("images", []):
        if image.get("newName", image["name"]).endswith("rayproject/ray"):
            assert Version(str(image["newTag"]).split("-")[0]) == version


def test_dockerfile_builds_on_the_pinned_ray_image() -> None:
    version = ray_version()
    text = (REPO / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(?:--\S+\s+)*(\S+)", text, re.MULTILINE | re.IGNORECASE)
    assert bases, "Dockerfile has no FROM"
    for base in bases:
        repository, tag = split_image(base)
        assert tag and tag != "latest", f"Dockerfile: FROM {base} must name a fixed tag"
    ray_bases = [split_image(b) for b in bases if split_image(b)[0].endswith("rayproject/ray")]
    assert ray_bases, "Dockerfile must build FROM rayproject/ray"
    for _, tag in ray_bases:
        assert Version(tag.split("-")[0]) == version, f"Dockerfile: FROM rayproject/ray:{tag} is not Ray {version}"
    for pinned in re.findall(r"ray\[[^\]]*\]==([0-9][^\s\"']*)", text):
        assert Version(pinned) == version, f"Dockerfile pins ray {pinned}, pyproject.toml says {version}"
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must end as a non-root USER"


def test_images_are_pinned() -> None:
    found = [(id_, image) for id_, doc in RESOURCES for image in images(doc)]
    assert found
    for id_, image in found:
        _, tag = split_image(image)
        assert tag or "@sha256:" in image, f"{id_}: image {image} has no tag"
        assert tag != "latest", f"{id_}: image {image} uses `latest`"
    for image in KUSTOMIZATION.get("images", []):
        tag = image.get("newTag")
        assert (tag and tag != "latest") or image.get("digest"), f"kustomization image {image['name']}"


# --- Secrets ----------------------------------------------------------------------------------


def test_no_secret_is_committed() -> None:
    assert not _of_kind("Secret"), "create Secrets from k8s/secrets.env (README.md); never commit one"
    assert "secretGenerator" not in KUSTOMIZATION
    ignored = (K8S / ".gitignore").read_text().split()
    assert "secrets.env" in ignored


@pytest.mark.parametrize(("id_", "doc"), RESOURCES, ids=_ids(RESOURCES))
def test_no_credential_is_inlined(id_: str, doc: dict) -> None:
    for where, var in env_vars(doc):
        if "value" in var:
            names_a_file = var["name"].endswith(("_FILE", "_PATH")) and str(var["value"]).startswith("/")
            if not names_a_file:  # e.g. POSTGRES_PASSWORD_FILE: a path to a mounted Secret is fine
                assert not CREDENTIAL_NAME.search(var["name"]), f"{id_} {where}: {var['name']} must come from a Secret"
            assert not CREDENTIALS_IN_URI.search(str(var["value"])), f"{id_} {where}: {var['name']} holds credentials"
    for where, container, _ in containers(doc):
        for arg in [*container.get("command", []), *container.get("args", [])]:
            assert not CREDENTIALS_IN_URI.search(arg), f"{id_} {where}: credentials in the command line"


def _example_env() -> dict[str, str]:
    example = {}
    for line in SECRETS_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            example[key] = value
    return example


def test_secret_example_has_only_placeholders_and_every_key_used() -> None:
    example = _example_env()
    for key, value in example.items():
        if CREDENTIAL_NAME.search(key):
            assert value == "CHANGE_ME", f"secrets.example.env: {key} must be the CHANGE_ME placeholder"
        for password in re.findall(r"://[^/\s:@]+:([^/\s@]+)@", value):
            assert password == "CHANGE_ME", f"secrets.example.env: {key} holds a password"
    referenced = {
        (ref["name"], ref["key"], bool(ref.get("optional")))
        for _, doc in RESOURCES
        for _, var in env_vars(doc)
        if (ref := var.get("valueFrom", {}).get("secretKeyRef"))
    }
    referenced |= {
        (volume["secret"]["secretName"], item["key"], bool(volume["secret"].get("optional")))
        for _, doc in RESOURCES
        for _, pod in pod_specs(doc)
        for volume in pod.get("volumes", [])
        if "secret" in volume
        for item in volume["secret"].get("items", [])
    }
    assert referenced
    for name, key, optional in referenced:
        assert name == "orchestrator-secrets", f"secretKeyRef to {name}: README.md creates orchestrator-secrets only"
        assert key in example or optional, f"{key} is used but missing from secrets.example.env"
    used = {key for _, key, _ in referenced}
    for _, doc in RAY_RESOURCES:
        auth = _cluster_spec(doc).get("authOptions", {})
        if "secretName" in auth:  # KubeRay reads the token from the key `auth_token`
            assert auth["secretName"] == "orchestrator-secrets" and "auth_token" in example
            used.add("auth_token")
    # And no stale key: each one reaches some container (a key that no longer does is a secret
    # someone keeps rotating for nothing, or a sign that a reference was lost).
    assert not set(example) - used, f"secrets.example.env: {sorted(set(example) - used)} are used nowhere"


# --- Exposure ---------------------------------------------------------------------------------


def test_services_stay_inside_the_cluster() -> None:
    for service in _of_kind("Service"):
        name = service["metadata"]["name"]
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", f"Service {name} must be ClusterIP"
        for port in service["spec"]["ports"]:
            exposed = {port["port"], port.get("targetPort")}
            assert not exposed & RAY_INTERNAL_PORTS, f"Service {name} exposes a Ray port"
    for _, doc in RAY_RESOURCES:
        head = _cluster_spec(doc)["headGroupSpec"]
        assert head.get("serviceType", "ClusterIP") == "ClusterIP"
        assert not head.get("enableIngress")
    assert not _of_kind("Ingress")


def test_network_policies_deny_by_default_and_admit_no_outsider_to_ray() -> None:
    policies = _of_kind("NetworkPolicy")
    assert any(
        p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in policies
    ), "no default-deny NetworkPolicy"
    for policy in policies:
        name = policy["metadata"]["name"]
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), f"NetworkPolicy {name}: an ingress rule without `from` admits everyone"
            ports = {p.get("port") for p in rule.get("ports", [])}
            for peer in rule["from"]:
                assert "ipBlock" not in peer, f"NetworkPolicy {name}: ingress from an IP block"
                if "namespaceSelector" in peer:
                    # Only the KubeRay operator, and only to the dashboard, to follow RayJobs.
                    operator = peer.get("podSelector", {}).get("matchLabels", {})
                    assert operator == {"app.kubernetes.io/name": "kuberay-operator"}, name
                    assert ports == {8265}, f"NetworkPolicy {name}: the operator needs port 8265 only"


# --- Hardened containers ----------------------------------------------------------------------


@pytest.mark.parametrize(("id_", "doc"), RESOURCES, ids=_ids(RESOURCES))
def test_containers_are_hardened_and_bounded(id_: str, doc: dict) -> None:
    for where, container, pod in containers(doc):
        label = f"{id_} {where}"
        sc = container.get("securityContext", {})
        assert sc.get("runAsNonRoot") is True, f"{label}: runAsNonRoot"
        assert isinstance(sc.get("runAsUser"), int) and sc["runAsUser"] > 0, f"{label}: explicit non-zero runAsUser"
        assert sc.get("allowPrivilegeEscalation") is False, f"{label}: allowPrivilegeEscalation"
        assert "ALL" in sc.get("capabilities", {}).get("drop", []), f"{label}: capabilities.drop [ALL]"
        assert not sc.get("capabilities", {}).get("add"), f"{label}: adds capabilities"
        assert not sc.get("privileged"), f"{label}: privileged"
        assert sc.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost"), f"{label}: seccomp"
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        if container["name"] not in WRITABLE_ROOT_FS:
            assert sc.get("readOnlyRootFilesystem") is True, f"{label}: readOnlyRootFilesystem"
            assert "/tmp" in mounts, f"{label}: a read-only root needs a writable volume at /tmp"
        volumes = {v["name"] for v in pod.get("volumes", [])}
        if doc["kind"] == "StatefulSet":
            volumes |= {t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])}
        for mount in mounts.values():
            assert mount["name"] in volumes, f"{label}: mounts unknown volume {mount['name']}"
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{label}: resources.{bound} cpu and memory"
        assert container.get("imagePullPolicy") in ("Always", "IfNotPresent"), f"{label}: imagePullPolicy"


@pytest.mark.parametrize(("id_", "doc"), RESOURCES, ids=_ids(RESOURCES))
def test_pods_share_nothing_with_the_node(id_: str, doc: dict) -> None:
    for where, pod in pod_specs(doc):
        label = f"{id_} {where}"
        assert pod.get("automountServiceAccountToken") is False, f"{label}: automountServiceAccountToken"
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(flag), f"{label}: {flag}"
        assert not [v for v in pod.get("volumes", []) if "hostPath" in v], f"{label}: hostPath volume"
        pod_sc = pod.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, f"{label}: pod runAsNonRoot"
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{label}: pod seccomp"


# --- The sweep on the cluster -----------------------------------------------------------------


def test_rayjob_runs_the_spec_on_shared_storage() -> None:
    spec = yaml.safe_load(SPEC.read_text())
    (job,) = _of_kind("RayJob")
    assert job["spec"]["entrypoint"].split() == ["orchestrator", "sweep", "/home/ray/spec/layers_cluster.yaml"]
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["activeDeadlineSeconds"] > 0
    assert "ttlSecondsAfterFinished" in job["spec"]
    assert spec["storage"].startswith("/mnt/shared/")
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token"
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    head = cluster["headGroupSpec"]["template"]["spec"]
    head_mounts = {m["mountPath"]: m["name"] for m in head["containers"][0]["volumeMounts"]}
    head_volumes = {v["name"]: v for v in head["volumes"]}
    assert head_volumes[head_mounts["/home/ray/spec"]]["configMap"]["name"] == "sweep-spec"
    for where, pod in pod_specs(job):
        if where == "submitter":
            continue
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        volume = {v["name"]: v for v in pod["volumes"]}[mounts["/mnt/shared"]]
        assert volume["persistentVolumeClaim"]["claimName"] == "sweep-storage", where
    (claim,) = [c for c in _of_kind("PersistentVolumeClaim") if c["metadata"]["name"] == "sweep-storage"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    (gpu,) = cluster["workerGroupSpecs"]
    assert gpu["minReplicas"] == 0 and gpu["maxReplicas"] >= spec["search"]["concurrent"]
    worker = gpu["template"]["spec"]
    limits = worker["containers"][0]["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) >= spec["resources"]["gpu"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in worker["tolerations"]


def test_cluster_spec_passes_orchestrator_validate() -> None:
    from orchestrator.run import validate

    report = validate(SPEC, data=False)  # the image folder lives on the cluster's volume
    assert "OK" in report


def test_configmap_spec_is_the_one_in_search_spaces() -> None:
    assert SPEC.read_text() == (REPO / "search_spaces" / "layers_cluster.yaml").read_text()


# --- Network policies, pod by pod ------------------------------------------------------------
#
# The policies are evaluated the way the API server's NetworkPolicy semantics define them: a
# pod selected by a policy of a direction is isolated in that direction and may use only what
# some rule of those policies allows. The pods are the stack's own (labels from the manifests,
# plus those KubeRay adds) and the few outside pods the policies name.

NAMESPACE = "orchestrator"
# Pods outside the namespace that the stack talks to or hears from: (namespace, labels).
OUTSIDE = {
    "dns": ("kube-system", {"k8s-app": "kube-dns"}),
    "minio": ("minio", {"app.kubernetes.io/name": "minio"}),
    "kuberay-operator": ("kuberay-system", {"app.kubernetes.io/name": "kuberay-operator"}),
}
# Addresses outside the cluster, which a NetworkPolicy can name only as an ipBlock; the policy
# that holds the ipBlock says what it is.
EXTERNAL = {"object-store": "s3", "ray-head-model-hub": "hub", "ray-head-kube-api": "kube-api"}
# What each pod may connect to, and who may connect to it: nothing more, nothing less.
EXPECTED_EGRESS = {
    "ray head": {"dns", "ray head", "ray worker", "mlflow", "minio", "s3", "hub", "kube-api"},
    "ray worker": {"dns", "ray head", "ray worker", "minio", "s3"},
    "submitter": {"dns", "ray head"},
    "mlflow": {"dns", "postgres", "minio", "s3"},
    "postgres": set(),
    "postgres backup": {"dns", "postgres"},
}
EXPECTED_INGRESS = {
    "ray head": {"ray head", "ray worker", "submitter", "kuberay-operator"},
    "ray worker": {"ray head", "ray worker"},
    "submitter": set(),
    "mlflow": {"ray head"},
    "postgres": {"mlflow", "postgres backup"},
    "postgres backup": set(),
}
# Ray's listening ports that rayStartParams must fix on every node (Ray picks random ones otherwise).
RAY_PORT_PARAMS = (
    "node-manager-port",
    "object-manager-port",
    "runtime-env-agent-port",
    "dashboard-agent-grpc-port",
    "dashboard-agent-listen-port",
)
RAY_GCS_PORT, RAY_DASHBOARD_PORT = 6379, 8265  # Ray's and KubeRay's defaults on the head
ALL_PORTS = None  # a rule without `ports`


def stack_pods(kind: str) -> dict[str, tuple[str, dict[str, str]]]:
    """(namespace, labels) of every pod of the stack, with the Ray pods of a `kind` resource."""
    (ray,) = _of_kind(kind)
    cluster = _cluster_spec(ray)
    (worker_group,) = cluster["workerGroupSpecs"]
    head_labels = cluster["headGroupSpec"]["template"]["metadata"]["labels"]
    worker_labels = worker_group["template"]["metadata"]["labels"]
    kuberay = {"ray.io/is-ray-node": "yes"}  # what KubeRay adds to every Ray node
    pods = {
        "ray head": {**head_labels, **kuberay, "ray.io/node-type": "head"},
        "ray worker": {**worker_labels, **kuberay, "ray.io/node-type": "worker"},
    }
    if kind == "RayJob":
        pods["submitter"] = ray["spec"]["submitterPodTemplate"]["metadata"]["labels"]
    templates = {"mlflow": ("Deployment", "mlflow"), "postgres": ("StatefulSet", "postgres")}
    for role, (workload_kind, name) in templates.items():
        (workload,) = [d for d in _of_kind(workload_kind) if d["metadata"]["name"] == name]
        pods[role] = workload["spec"]["template"]["metadata"]["labels"]
    (backup,) = _of_kind("CronJob")
    pods["postgres backup"] = backup["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return {role: (NAMESPACE, labels) for role, labels in pods.items()}


def _policies(direction: str, labels: dict[str, str]) -> list[dict]:
    return [
        p
        for p in _of_kind("NetworkPolicy")
        if direction in p["spec"].get("policyTypes", ["Ingress"]) and selects(p["spec"]["podSelector"], labels)
    ]


def _peer_matches(peer: dict, namespace: str, labels: dict[str, str]) -> bool:
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
    else:
        in_namespace = namespace == NAMESPACE
    return in_namespace and selects(peer.get("podSelector", {}), labels)


def _rule_ports(rule: dict) -> set[tuple[str, int]] | None:
    if not rule.get("ports"):
        return ALL_PORTS
    ports = set()
    for entry in rule["ports"]:
        first = entry["port"]
        ports |= {(entry.get("protocol", "TCP"), p) for p in range(first, entry.get("endPort", first) + 1)}
    return ports


def _union(a: set | None, b: set | None) -> set | None:
    return ALL_PORTS if a is ALL_PORTS or b is ALL_PORTS else a | b


def egress_ports(source: dict[str, str], pods: dict[str, tuple[str, dict]]) -> dict[str, set | None]:
    """Destination name -> the ports `source` (labels) may open to it, by its egress policies."""
    policies = _policies("Egress", source)
    if not policies:  # not isolated for egress
        return {name: ALL_PORTS for name in [*pods, *OUTSIDE, *EXTERNAL.values()]}
    reach: dict[str, set | None] = {}
    for policy in policies:
        for rule in policy["spec"].get("egress", []):
            ports = _rule_ports(rule)
            for peer in rule.get("to", []):
                if "ipBlock" in peer:
                    name = policy["metadata"]["name"]
                    dest = EXTERNAL.get(name, f"ipBlock {peer['ipBlock']['cidr']} of {name}")
                    reach[dest] = _union(reach.get(dest, set()), ports)
                for dest, (namespace, labels) in {**pods, **OUTSIDE}.items():
                    if _peer_matches(peer, namespace, labels):
                        reach[dest] = _union(reach.get(dest, set()), ports)
    return reach


def ingress_ports(target: dict[str, str], pods: dict[str, tuple[str, dict]]) -> dict[str, set | None]:
    """Source name -> the ports it may connect to on `target` (labels), by target's ingress policies."""
    policies = _policies("Ingress", target)
    if not policies:
        return {name: ALL_PORTS for name in [*pods, *OUTSIDE]}
    admitted: dict[str, set | None] = {}
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            ports = _rule_ports(rule)
            for peer in rule.get("from", []):
                for source, (namespace, labels) in {**pods, **OUTSIDE}.items():
                    if _peer_matches(peer, namespace, labels):
                        admitted[source] = _union(admitted.get(source, set()), ports)
    return admitted


def open_ports(source: str, dest: str, pods: dict[str, tuple[str, dict]]) -> set | None:
    """The ports on which `source` can connect to `dest`: allowed by both ends' policies."""
    out = egress_ports(pods[source][1], pods).get(dest, set())
    if dest not in pods:  # outside the namespace: only our egress is ours to check
        return out
    into = ingress_ports(pods[dest][1], pods).get(source, set())
    if out is ALL_PORTS:
        return into
    return out if into is ALL_PORTS else out & into


def _tcp(ports: set | None) -> set[int]:
    assert ports is not ALL_PORTS, "a rule allows every port"
    return {port for protocol, port in ports if protocol == "TCP"}


RAY_POLICY_KINDS = sorted(RAY_KINDS)


def rule_problems(rule: dict, peers_key: str) -> list[str]:
    """What makes a rule reach every address or every port: no `to`/`from`, no ports, an ipBlock
    of (nearly) all addresses, a selector of every namespace or every pod."""
    problems = []
    if not rule.get(peers_key):
        problems.append(f"without `{peers_key}` it reaches every address")
    if not rule.get("ports"):
        problems.append("names no ports, so it allows all of them")
    for entry in rule.get("ports", []):
        if not isinstance(entry.get("port"), int) or entry.get("protocol") not in ("TCP", "UDP"):
            problems.append(f"{entry}: every port by number, with its protocol")
    for peer in rule.get(peers_key, []):
        if "ipBlock" in peer:
            network = ipaddress.ip_network(peer["ipBlock"]["cidr"], strict=False)
            if network.prefixlen < (8 if network.version == 4 else 32):
                problems.append(f"ipBlock {network} is (nearly) every address")
            continue
        if not peer.get("podSelector"):
            problems.append(f"{peer}: a peer must name its pods by label")
        if "namespaceSelector" in peer and not peer["namespaceSelector"]:
            problems.append("`namespaceSelector: {}` is every namespace")
    return problems


def test_no_rule_reaches_every_address_or_every_port() -> None:
    """Every egress rule names its destinations and ports; every ingress rule its sources and ports."""
    for policy in _of_kind("NetworkPolicy"):
        for direction, peers_key in (("egress", "to"), ("ingress", "from")):
            for i, rule in enumerate(policy["spec"].get(direction, [])):
                problems = rule_problems(rule, peers_key)
                assert not problems, f"NetworkPolicy {policy['metadata']['name']} {direction}[{i}]: {problems}"


@pytest.mark.parametrize(
    "rule",
    [
        {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 9000}]},  # any address
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]},
        {"to": [{"ipBlock": {"cidr": "::/0"}}], "ports": [{"protocol": "TCP", "port": 443}]},
        {"to": [{"podSelector": {"matchLabels": {"ray.io/is-ray-node": "yes"}}}]},  # every port
        {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"a": "b"}}}], "ports": [{"port": 1}]},
        {"to": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 5000}]},
    ],
)
def test_the_rule_check_refuses_what_the_policies_used_to_allow(rule: dict) -> None:
    assert rule_problems(rule, "to")


@pytest.mark.parametrize("kind", RAY_POLICY_KINDS)
def test_each_pod_reaches_only_what_it_needs(kind: str) -> None:
    pods = stack_pods(kind)
    for role, expected in EXPECTED_EGRESS.items():
        if role not in pods:
            continue
        expected = expected & (set(pods) | set(OUTSIDE) | set(EXTERNAL.values()))
        reach = {dest for dest, ports in egress_ports(pods[role][1], pods).items() if ports is ALL_PORTS or ports}
        assert reach == expected, f"{kind}: {role} may connect to {sorted(reach)}, should to {sorted(expected)}"


@pytest.mark.parametrize("kind", RAY_POLICY_KINDS)
def test_each_pod_admits_only_who_needs_it(kind: str) -> None:
    pods = stack_pods(kind)
    for role, expected in EXPECTED_INGRESS.items():
        if role not in pods:
            continue
        expected = expected & (set(pods) | set(OUTSIDE))
        admitted = {src for src, ports in ingress_ports(pods[role][1], pods).items() if ports is ALL_PORTS or ports}
        assert admitted == expected, f"{kind}: {role} admits {sorted(admitted)}, should {sorted(expected)}"


@pytest.mark.parametrize("kind", RAY_POLICY_KINDS)
def test_workers_reach_neither_mlflow_nor_the_hub_nor_the_kubernetes_api(kind: str) -> None:
    """Trials run on the workers: they get no way to MLflow (only the driver logs), to the model
    hub (the driver loads the weights once and ships them through Ray) or to the API server."""
    pods = stack_pods(kind)
    reach = egress_ports(pods["ray worker"][1], pods)
    for dest in ("mlflow", "postgres", "hub", "kube-api"):
        assert not reach.get(dest), f"{kind}: Ray workers can reach {dest}"
    head = egress_ports(pods["ray head"][1], pods)
    assert _tcp(head["mlflow"]) == {5000}
    assert _tcp(head["hub"]) == {443}
    assert _tcp(head["kube-api"]) <= {443, 6443}


@pytest.mark.parametrize("kind", RAY_POLICY_KINDS)
def test_the_connections_the_stack_needs_are_open_at_both_ends(kind: str) -> None:
    pods = stack_pods(kind)
    needed = [
        ("ray worker", "ray head", RAY_GCS_PORT),
        ("ray head", "mlflow", 5000),
        ("mlflow", "postgres", 5432),
        ("postgres backup", "postgres", 5432),
        ("mlflow", "minio", 9000),
        ("mlflow", "s3", 443),
        ("ray worker", "minio", 9000),
        ("ray head", "kube-api", 6443),
    ]
    if "submitter" in pods:
        needed.append(("submitter", "ray head", RAY_DASHBOARD_PORT))
    for source, dest, port in needed:
        assert port in _tcp(open_ports(source, dest, pods)), f"{kind}: {source} cannot reach {dest}:{port}"
    for role in EXPECTED_EGRESS:
        if "dns" in EXPECTED_EGRESS[role] and role in pods:
            assert ("UDP", 53) in open_ports(role, "dns", pods), f"{kind}: {role} cannot resolve names"
    assert open_ports("ray worker", "ray head", pods) == open_ports("ray head", "ray worker", pods)


def _ray_ports(kind: str) -> set[int]:
    """The ports Ray listens on for other Ray nodes, as rayStartParams fix them."""
    (ray,) = _of_kind(kind)
    cluster = _cluster_spec(ray)
    groups = [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]
    params = []
    for name, group in groups:
        start = group.get("rayStartParams", {})
        missing = [key for key in (*RAY_PORT_PARAMS, "min-worker-port", "max-worker-port") if key not in start]
        assert not missing, f"{kind} {name}: rayStartParams must fix {missing} (NetworkPolicies name them)"
        params.append({key: int(start[key]) for key in (*RAY_PORT_PARAMS, "min-worker-port", "max-worker-port")})
        assert int(start.get("port", RAY_GCS_PORT)) == RAY_GCS_PORT
    assert all(p == params[0] for p in params), f"{kind}: every node must listen on the same ports"
    first = params[0]
    workers = set(range(first["min-worker-port"], first["max-worker-port"] + 1))
    return {RAY_GCS_PORT, RAY_DASHBOARD_PORT} | {first[key] for key in RAY_PORT_PARAMS} | workers


@pytest.mark.parametrize("kind", RAY_POLICY_KINDS)
def test_ray_nodes_talk_on_their_fixed_ports_only(kind: str) -> None:
    pods = stack_pods(kind)
    expected = _ray_ports(kind)
    for source, dest in [("ray head", "ray worker"), ("ray worker", "ray head"), ("ray worker", "ray worker")]:
        assert _tcp(open_ports(source, dest, pods)) == expected, f"{kind}: {source} -> {dest}"
    # Not between nodes: the Ray client and the metrics port.
    assert not {10001, 8080} & expected


# --- MLflow: a least-privilege user for sweeps -------------------------------------------------


def _auth_config() -> configparser.SectionProxy:
    config = configparser.ConfigParser()
    config.read_string(MLFLOW_AUTH_INI.read_text())
    return config["mlflow"]


def test_mlflow_users_see_nothing_they_were_not_given() -> None:
    """default_permission NO_PERMISSIONS: a user reads only what they created or were granted."""
    auth = _auth_config()
    assert auth["default_permission"] == "NO_PERMISSIONS"
    assert urlsplit(auth["database_uri"]).password is None, "basic_auth.ini is a ConfigMap: no password in it"
    deployment = _workload("Deployment", "mlflow")
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in pod["containers"] + pod.get("initContainers", []):
        path = Path(_env(container)["MLFLOW_AUTH_CONFIG_PATH"]["value"])
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent)]
        assert volumes[mount["name"]]["configMap"]["name"] == "mlflow-auth", container["name"]
        assert _generated_files("mlflow-auth")[path.name] == MLFLOW_AUTH_INI
    (server,) = pod["containers"]
    assert "--app-name=basic-auth" in server["args"]
    assert _secret_key(_env(server).get("MLFLOW_FLASK_SERVER_SECRET_KEY")), "basic auth refuses to start without it"


def test_only_the_mlflow_pod_holds_the_admin_account() -> None:
    for id_, doc in RESOURCES:
        for where, container, pod in containers(doc):
            keys = _secret_keys_of(container, pod)
            is_server = doc["kind"] == "Deployment" and where == "template container mlflow"
            if "MLFLOW_AUTH_ADMIN_PASSWORD" in keys:
                assert is_server, f"{id_} {where}: the MLflow admin password belongs to the MLflow server only"
            if "MLFLOW_AUTH_ADMIN_USERNAME" in keys:
                assert doc["kind"] == "Deployment" and doc["metadata"]["name"] == "mlflow", f"{id_} {where}"


def test_sweeps_log_in_as_the_sweep_user_from_the_head_only() -> None:
    example = _example_env()
    assert example["MLFLOW_TRACKING_USERNAME"] != example["MLFLOW_AUTH_ADMIN_USERNAME"], "sweeps must not be admin"
    for id_, doc in RAY_RESOURCES:
        for where, container, _ in containers(doc):
            env = _env(container)
            if where.startswith("head container"):
                assert _secret_key(env.get("MLFLOW_TRACKING_USERNAME")) == "MLFLOW_TRACKING_USERNAME", id_
                assert _secret_key(env.get("MLFLOW_TRACKING_PASSWORD")) == "MLFLOW_TRACKING_PASSWORD", id_
            else:
                mlflow = [name for name in env if name.startswith("MLFLOW_")]
                assert not mlflow, f"{id_} {where}: only the driver talks to MLflow"
    # The account the head logs in as is the one the MLflow pod's init container creates.
    pod = _workload("Deployment", "mlflow")["spec"]["template"]["spec"]
    (bootstrap,) = pod["initContainers"]
    env = _env(bootstrap)
    assert _secret_key(env["MLFLOW_SWEEP_USERNAME"]) == "MLFLOW_TRACKING_USERNAME"
    assert _secret_key(env["MLFLOW_SWEEP_PASSWORD"]) == "MLFLOW_TRACKING_PASSWORD"
    assert _secret_key(env["MLFLOW_AUTH_ADMIN_USERNAME"]) == "MLFLOW_AUTH_ADMIN_USERNAME"
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" not in env, "the bootstrap needs the database, not the admin password"
    mounts = {m["mountPath"] for m in bootstrap["volumeMounts"]}
    script = Path(bootstrap["command"][-1])
    assert str(script.parent) in mounts and _generated_files("mlflow-auth")[script.name] == BOOTSTRAP_SCRIPT


def _bootstrap_module() -> ModuleType:
    """The init container's script as a module (executed from source: no bytecode lands in k8s/)."""
    module = ModuleType("bootstrap_sweep_user")
    exec(compile(BOOTSTRAP_SCRIPT.read_text(), str(BOOTSTRAP_SCRIPT), "exec"), module.__dict__)
    return module


class FakeUserStore:
    """The part of MLflow's auth SqlAlchemyStore that the bootstrap uses."""

    def __init__(self, users: dict[str, tuple[str, bool]] | None = None, race: bool = False) -> None:
        self.users = dict(users or {})
        self.race = race  # another replica creates the user between has_user and create_user

    def has_user(self, username: str, *, use_primary: bool = False) -> bool:
        return username in self.users

    def create_user(self, username: str, password: str, is_admin: bool = False) -> None:
        if self.race:
            self.users[username] = ("other", False)
            raise RuntimeError("already exists")
        self.users[username] = (password, is_admin)

    def update_user(self, username: str, password: str | None = None, is_admin: bool | None = None) -> None:
        old_password, old_admin = self.users[username]
        self.users[username] = (password or old_password, old_admin if is_admin is None else is_admin)


def test_sweep_user_bootstrap_creates_a_plain_user_and_keeps_it_plain() -> None:
    bootstrap = _bootstrap_module()
    store = FakeUserStore({"admin": ("admin-password", True)})
    assert bootstrap.ensure_sweep_user(store, "sweeper", "sweeper-password-1", "admin") == "created"
    assert store.users["sweeper"] == ("sweeper-password-1", False)
    # Re-run with a rotated password, after someone made the account an admin.
    store.users["sweeper"] = ("sweeper-password-1", True)
    assert bootstrap.ensure_sweep_user(store, "sweeper", "sweeper-password-2", "admin") == "updated"
    assert store.users["sweeper"] == ("sweeper-password-2", False)
    assert store.users["admin"] == ("admin-password", True)
    # Two replicas starting at once: the loser updates instead of failing.
    raced = FakeUserStore(race=True)
    assert bootstrap.ensure_sweep_user(raced, "sweeper", "sweeper-password-3", "admin") == "updated"
    assert raced.users["sweeper"] == ("sweeper-password-3", False)


@pytest.mark.parametrize(("username", "problem"), [("admin", "is the admin account"), ("", "empty")])
def test_sweep_user_bootstrap_refuses_the_admin_account(username: str, problem: str) -> None:
    bootstrap = _bootstrap_module()
    store = FakeUserStore({"admin": ("admin-password", True)})
    with pytest.raises(ValueError, match=problem):
        bootstrap.ensure_sweep_user(store, username, "sweeper-password-1", "admin")
    assert store.users == {"admin": ("admin-password", True)}


def test_sweep_user_bootstrap_against_mlflows_own_user_store(tmp_path: Path, monkeypatch, capsys) -> None:
    """The real script against MLflow's auth store (SQLite here, PostgreSQL in the cluster)."""
    if importlib.util.find_spec("flask_wtf") is None:
        pytest.skip("MLflow's basic-auth app needs mlflow[auth] (Flask-WTF); the MLflow image has it")
    config = tmp_path / "basic_auth.ini"
    database = f"sqlite:///{tmp_path / 'auth.db'}"
    config.write_text(re.sub(r"(?m)^database_uri = .*$", f"database_uri = {database}", MLFLOW_AUTH_INI.read_text()))
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(config))
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_SWEEP_USERNAME", "sweeper")
    bootstrap = _bootstrap_module()
    for password in ("sweeper-password-1", "sweeper-password-2"):
        monkeypatch.setenv("MLFLOW_SWEEP_PASSWORD", password)
        assert bootstrap.main() == 0
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(database)
    assert store.get_user("sweeper").is_admin is False
    assert store.authenticate_user("sweeper", "sweeper-password-2")
    monkeypatch.setenv("MLFLOW_SWEEP_USERNAME", "admin")
    assert bootstrap.main() == 1
    assert "admin account" in capsys.readouterr().err


# --- PostgreSQL: a non-superuser role for MLflow, a disruption budget, backups ----------------


def _init_sql() -> str:
    (init,) = [c for c in _of_kind("ConfigMap") if c["metadata"]["name"] == "postgres-init"]
    return "\n".join(init["data"].values())


def _roles(sql: str) -> dict[str, set[str]]:
    """CREATE ROLE statements of the init script: role -> its attribute keywords."""
    return {
        name: set(re.findall(r"\b[A-Z]+\b", attributes))
        for name, attributes in re.findall(r"CREATE ROLE (\w+)([^;]*);", sql)
    }


def _postgres_container() -> tuple[dict, dict]:
    pod = _workload("StatefulSet", "postgres")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return container, pod


def _mlflow_database_uris() -> list[str]:
    (server,) = _workload("Deployment", "mlflow")["spec"]["template"]["spec"]["containers"]
    return [_env(server)["MLFLOW_BACKEND_STORE_URI"]["value"], _auth_config()["database_uri"]]


def test_mlflow_connects_to_postgres_as_a_role_that_is_not_superuser() -> None:
    container, pod = _postgres_container()
    superuser = _env(container)["POSTGRES_USER"]["value"]
    sql, roles = _init_sql(), _roles(_init_sql())
    for uri in _mlflow_database_uris():
        parts = urlsplit(uri)
        database = parts.path.lstrip("/")
        assert parts.username == "mlflow" != superuser, f"{uri}: MLflow must not be the superuser"
        assert parts.password is None, f"{uri}: the password comes from PGPASSWORD, not the URI"
        assert re.search(rf"CREATE DATABASE {database} OWNER mlflow;", sql), f"mlflow must own {database}"
        assert re.search(rf"REVOKE ALL ON DATABASE [\w, ]*\b{database}\b[\w, ]* FROM PUBLIC;", sql), database
    assert {"LOGIN", "NOSUPERUSER", "NOCREATEDB", "NOCREATEROLE", "NOREPLICATION", "NOBYPASSRLS"} <= roles["mlflow"]
    assert not {"SUPERUSER", "CREATEDB", "CREATEROLE"} & roles["mlflow"]
    # The password MLflow sends is the one the init script gives the role.
    (server,) = _workload("Deployment", "mlflow")["spec"]["template"]["spec"]["containers"]
    key = _secret_key(_env(server)["PGPASSWORD"])
    (password_file,) = re.findall(r"\\set mlflow_password `cat ([^`]+)`", sql)
    items = {
        f"{m['mountPath']}/{item['path']}": item["key"]
        for m in container["volumeMounts"]
        for v in pod["volumes"]
        if v["name"] == m["name"] and "secret" in v
        for item in v["secret"]["items"]
    }
    assert items[password_file] == key == "MLFLOW_DB_PASSWORD"


def test_the_postgres_superuser_password_stays_in_the_postgres_pod() -> None:
    for id_, doc in RESOURCES:
        for where, container, pod in containers(doc):
            if "POSTGRES_PASSWORD" in _secret_keys_of(container, pod):
                assert doc["kind"] == "StatefulSet" and doc["metadata"]["name"] == "postgres", f"{id_} {where}"


def test_postgres_has_a_disruption_budget() -> None:
    labels = _workload("StatefulSet", "postgres")["spec"]["template"]["metadata"]["labels"]
    budgets = [b for b in _of_kind("PodDisruptionBudget") if selects(b["spec"]["selector"], labels)]
    assert budgets, "no PodDisruptionBudget selects the PostgreSQL pod"
    for budget in budgets:
        spec = budget["spec"]
        assert spec.get("minAvailable", 0) >= 1 or spec.get("maxUnavailable") == 0, "a drain must not evict it"


def test_postgres_is_backed_up_every_day_with_retention() -> None:
    (cron,) = _of_kind("CronJob")
    spec = cron["spec"]
    minute, hour, *days = spec["schedule"].split()
    assert days == ["*", "*", "*"] and minute.isdigit() and hour.isdigit(), "one dump a day"
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    script, env = "\n".join(container["args"]), _env(container)
    server, _ = _postgres_container()
    assert container["image"] == server["image"], "pg_dump must match the server's major version"
    for uri in _mlflow_database_uris():
        database = urlsplit(uri).path.lstrip("/")
        assert re.search(r"pg_dump\b", script) and re.search(rf"\b{database}\b", script), f"{database} is not dumped"
    # Retention: old dumps deleted after a successful run, by a number of days from the env.
    assert re.search(r"find /backup .*-mtime \"\+\$BACKUP_RETENTION_DAYS\" .*-delete", script)
    assert int(env["BACKUP_RETENTION_DAYS"]["value"]) > 0
    assert script.lstrip().startswith("set -eu"), "a failed dump must stop before the retention deletes anything"
    volumes = {v["name"]: v for v in pod["volumes"]}
    (backup,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/backup"]
    claim = volumes[backup["name"]]["persistentVolumeClaim"]["claimName"]
    assert claim in {c["metadata"]["name"] for c in _of_kind("PersistentVolumeClaim")}
    # It reads as a role that can read everything and write nothing.
    role = env["PGUSER"]["value"]
    assert {"LOGIN", "NOSUPERUSER", "NOCREATEDB", "NOCREATEROLE"} <= _roles(_init_sql())[role]
    assert re.search(rf"GRANT pg_read_all_data TO {role};", _init_sql())
    assert "PGPASSWORD" not in env, "the password is a mounted file, read by the script"
    assert _secret_keys_of(container, pod) == {"POSTGRES_BACKUP_PASSWORD"}
    (password_file,) = re.findall(r"PGPASSWORD=\$\(cat ([^)]+)\)", script)
    (mount,) = [m for m in container["volumeMounts"] if password_file.startswith(m["mountPath"] + "/")]
    items = {item["path"]: item["key"] for item in volumes[mount["name"]]["secret"]["items"]}
    assert items[password_file.removeprefix(mount["mountPath"] + "/")] == "POSTGRES_BACKUP_PASSWORD"


# --- Driver-only secrets ----------------------------------------------------------------------


def test_no_container_takes_the_whole_secret() -> None:
    """envFrom would hand every key of the Secret to the container: each key goes by name."""
    for id_, doc in RESOURCES:
        for where, container, _ in containers(doc):
            assert not container.get("envFrom"), f"{id_} {where}: envFrom"


def test_state_key_reaches_the_ray_head_only() -> None:
    """The driver signs what it writes to shared storage with ORCHESTRATOR_STATE_KEY; a worker
    that had the key could forge state the driver would trust, so only the head gets it."""
    heads = 0
    for id_, doc in RESOURCES:
        for where, container, pod in containers(doc):
            env = _env(container)
            has_key = "state_key" in _secret_keys_of(container, pod) or "ORCHESTRATOR_STATE_KEY" in env
            if doc["kind"] in RAY_KINDS and where.startswith("head container"):
                var = env.get("ORCHESTRATOR_STATE_KEY", {})
                assert _secret_key(var) == "state_key", f"{id_}: the driver needs ORCHESTRATOR_STATE_KEY"
                assert not var["valueFrom"]["secretKeyRef"].get("optional"), f"{id_}: the key must not be optional"
                heads += 1
            else:
                assert not has_key, f"{id_} {where}: only the Ray head may hold the state key"
    assert heads == len(RAY_RESOURCES)
    assert re.search(r"openssl rand -hex 32", SECRETS_EXAMPLE.read_text())
    assert _example_env()["state_key"] == "CHANGE_ME"


def test_ray_workers_get_no_driver_secret() -> None:
    """Workers run trials, i.e. user code: they get the object-store keys at most."""
    for id_, doc in RAY_RESOURCES:
        for where, container, pod in containers(doc):
            if where.startswith("worker group"):
                keys = _secret_keys_of(container, pod)
                assert keys <= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, f"{id_} {where}: {sorted(keys)}"


# --- The image: dependencies from a lock file with hashes ------------------------------------


def _lock() -> dict[str, tuple[Version, list[str], list[str]]]:
    """image.lock: canonical name -> (pinned version, hashes, `# via` lines)."""
    entries: dict[str, tuple[Version, list[str], list[str]]] = {}
    current = None
    for line in IMAGE_LOCK.read_text().splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and current is None):
            continue
        if not line.startswith((" ", "#")):
            match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;\\]+)\s*\\?", line)
            assert match, f"image.lock: {line!r} is not pinned with =="
            current = canonicalize_name(match.group(1))
            entries[current] = (Version(match.group(2)), [], [])
        elif stripped.startswith("--hash="):
            assert re.fullmatch(r"--hash=sha256:[0-9a-f]{64}\s*\\?", stripped), f"image.lock: {stripped!r}"
            entries[current][1].append(stripped)
        elif stripped.startswith("#"):
            via = stripped.lstrip("#").strip()
            entries[current][2].append(via.removeprefix("via").strip())
        else:
            pytest.fail(f"image.lock: unexpected line {line!r}")
    return entries


def _pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_image_lock_pins_every_runtime_dependency_with_hashes() -> None:
    lock = _lock()
    assert lock and all(hashes for _, hashes, _ in lock.values()), "every locked package needs a --hash"
    for line in _pyproject()["project"]["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in lock, f"image.lock lacks {requirement.name}"
        version = lock[name][0]
        assert requirement.specifier.contains(version, prereleases=True), f"image.lock: {name}=={version} is not {line}"
    assert lock["ray"][0] == ray_version(), "Ray in the image must be the base image's"
    for line in IMAGE_LOCK_INPUT.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            assert requirement.specifier.contains(lock[canonicalize_name(requirement.name)][0]), line


def test_image_lock_leaves_out_the_dev_extras() -> None:
    """Only runtime dependencies (and image.in's pins) are top-level in the lock."""
    direct = {canonicalize_name(Requirement(d).name) for d in _pyproject()["project"]["dependencies"]}
    direct |= {
        canonicalize_name(Requirement(line).name)
        for line in IMAGE_LOCK_INPUT.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for name, (_, _, vias) in _lock().items():
        if any(via.startswith("orchestrator") or via.startswith("-r") for via in vias):
            assert name in direct, f"image.lock: {name} is there for the project, but is not a runtime dependency"
    dev_only = {"pytest", "ruff", "kubernetes-validate", "moto"}
    assert not dev_only & set(_lock()), "dev extras in the image lock"
    header = IMAGE_LOCK.read_text().split("\n", 3)[:3]
    command = " ".join(header)
    assert "uv pip compile" in command and "--generate-hashes" in command, "the lock's header says how to regenerate it"
    assert "--extra" not in command and "--all-extras" not in command


def test_dockerfile_installs_only_locked_dependencies() -> None:
    text = (REPO / "Dockerfile").read_text()
    instructions = re.sub(r"\\\n\s*", " ", text)  # join continuation lines
    installs = re.findall(r"\bpip install ([^&\n]*)", instructions)
    lock = str(IMAGE_LOCK.relative_to(REPO))
    assert re.search(rf"^COPY\b.*\b{re.escape(lock)}\b", text, re.MULTILINE), "the lock must be in the image"
    locked = [args for args in installs if f"-r {lock}" in args]
    assert locked and all("--require-hashes" in args for args in locked), "pip must check every package's hash"
    for args in installs:
        if args not in locked:  # the project itself: nothing resolved, downloaded or built aside
            assert {"--no-deps", "--no-index", "--no-build-isolation"} <= set(args.split()), args
    assert "uv pip compile" in text, "the Dockerfile says how to regenerate the lock"
