"""Validation of manifests against the Kubernetes API schemas, strictly (an unknown field is an error, as
`kubectl apply --validate=strict` makes it):

- core objects (Deployment, Service, HorizontalPodAutoscaler, ServiceAccount) against the `kubernetes` Python
  client's models: every field must be one of the model's attributes with the model's type, and building the
  models checks required fields and enums;
- the KServe InferenceService against its CRD's openAPIV3Schema (schemas/, kept to the fields trt-deploy writes).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

SCHEMAS = Path(__file__).resolve().parent / "schemas"
KINDS = {("apps/v1", "Deployment"): "V1Deployment", ("v1", "Service"): "V1Service",
         ("v1", "ServiceAccount"): "V1ServiceAccount",
         ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler"}
_PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float)}


def model_errors(data, type_name: str, path: str = "") -> list[str]:
    """Where `data` departs from the kubernetes client's model `type_name` (unknown fields, wrong types)."""
    import kubernetes.client as k8s

    if type_name in _PRIMITIVES:
        ok = isinstance(data, _PRIMITIVES[type_name]) and not (type_name == "int" and isinstance(data, bool))
        return [] if ok else [f"{path}: {data!r} is not {type_name}"]
    if type_name == "object":  # IntOrString, quantities
        return [] if isinstance(data, (str, int, float)) else [f"{path}: {data!r} is not a string or number"]
    match = re.fullmatch(r"[lL]ist\[(.+)\]", type_name)
    if match:
        if not isinstance(data, list):
            return [f"{path}: not a list"]
        return [e for i, item in enumerate(data) for e in model_errors(item, match.group(1), f"{path}[{i}]")]
    match = re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", type_name)
    if match:
        if not isinstance(data, dict):
            return [f"{path}: not a mapping"]
        value_type = match.group(1) or match.group(2)
        return [e for key, value in data.items() for e in model_errors(value, value_type, f"{path}.{key}")]
    model = getattr(k8s, type_name)
    if not isinstance(data, dict):
        return [f"{path}: not a mapping ({type_name})"]
    fields = {json_key: attribute for attribute, json_key in model.attribute_map.items()}
    errors = []
    for key, value in data.items():
        if key not in fields:
            errors.append(f"{path}.{key}: unknown field of {type_name}")
        else:
            errors += model_errors(value, model.openapi_types[fields[key]], f"{path}.{key}")
    return errors


def build_model(data: dict, type_name: str):
    """The client's model object; its constructors raise ValueError for missing required fields and bad enums."""
    import kubernetes.client as k8s

    return k8s.ApiClient().deserialize(json.dumps(data), type_name, "application/json")


def strict(schema):
    """The schema with `additionalProperties: false` on every object that lists its properties."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if "properties" in result and "additionalProperties" not in result:
        result["additionalProperties"] = False
    return result


def manifest_errors(document: dict) -> list[str]:
    """Every validation error of one manifest (empty when it is valid)."""
    key = (document.get("apiVersion"), document.get("kind"))
    if key == ("serving.kserve.io/v1beta1", "InferenceService"):
        import jsonschema

        schema = strict(json.loads((SCHEMAS / "kserve_inferenceservice_v1beta1.json").read_text()))
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in jsonschema.Draft7Validator(schema).iter_errors(document)]
        return errors + model_errors(document.get("metadata", {}), "V1ObjectMeta", "metadata")
    if key not in KINDS:
        return [f"no schema for {key}"]
    errors = model_errors(document, KINDS[key])
    try:
        build_model(document, KINDS[key])
    except ValueError as exc:
        errors.append(f"{KINDS[key]}: {exc}")
    return errors
