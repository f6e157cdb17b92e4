#!/usr/bin/env python3
"""Validate custom resources against a generated CRD, offline (no API server).

The CRD's openAPIV3Schema is converted to JSON Schema the way the API server reads it
(`nullable`, `x-kubernetes-int-or-string`, `x-kubernetes-preserve-unknown-fields`; objects are
closed, as pruning would drop unknown fields), defaults are applied first (as the API server
does), then the schema is checked with jsonschema and every `x-kubernetes-validations` CEL rule
is evaluated with cel-python. Errors name the field, e.g. `.spec.job.entry: '' is too short`.

  crd_validate.py CRD.yaml --valid DIR_OR_FILE... --invalid DIR_OR_FILE...

--valid:   every document of the CRD's kind must pass (other kinds are skipped).
--invalid: every file must fail, and its error must contain the fragment given in the
           file's `# expect: FRAGMENT` comment.
Exit status 0 only if every expectation holds.
"""

import argparse
import copy
import pathlib
import sys

import celpy
import jsonschema
import yaml


def to_json_schema(node):
    """The OpenAPI v3 structural schema as JSON Schema (draft 2020-12)."""
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(v) for v in value]
        elif key.startswith("x-kubernetes-") or key in ("nullable", "default", "description", "format"):
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("type") == "object" and "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def apply_defaults(schema, value):
    """Fills in `default`s of absent properties, recursively, as the API server does."""
    if isinstance(value, dict):
        for name, prop in schema.get("properties", {}).items():
            if name not in value and "default" in prop:
                value[name] = copy.deepcopy(prop["default"])
            if name in value:
                apply_defaults(prop, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for v in value.values():
                apply_defaults(extra, v)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for v in value:
            apply_defaults(schema["items"], v)


def cel_errors(schema, value, path, env):
    """Evaluates the CEL rules of `schema` and of everything below it against `value`."""
    errors = []
    for rule in schema.get("x-kubernetes-validations", []) if value is not None else []:
        program = env.program(env.compile(rule["rule"]))
        try:
            ok = program.evaluate({"self": celpy.json_to_cel(value)})
        except celpy.CELEvalError as e:
            ok = False
            rule = dict(rule, message=f"rule {rule['rule']!r} failed to evaluate: {e}")
        if not bool(ok):
            where = path + rule.get("fieldPath", "")
            errors.append(f"{where or '.'}: {rule.get('message', 'failed rule: ' + rule['rule'])}")
    if isinstance(value, dict):
        for name, prop in schema.get("properties", {}).items():
            if name in value:
                errors += cel_errors(prop, value[name], f"{path}.{name}", env)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for k, v in value.items():
                errors += cel_errors(extra, v, f"{path}[{k!r}]", env)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            errors += cel_errors(schema["items"], v, f"{path}[{i}]", env)
    return errors


class Crd:
    def __init__(self, path):
        crd = yaml.safe_load(pathlib.Path(path).read_text())
        self.group = crd["spec"]["group"]
        self.kind = crd["spec"]["names"]["kind"]
        self.versions = {}
        for version in crd["spec"]["versions"]:
            schema = version["schema"]["openAPIV3Schema"]
            json_schema = to_json_schema(schema)
            # metadata is validated by the API server itself, not by the CRD schema.
            json_schema.setdefault("properties", {})["metadata"] = {"type": "object"}
            json_schema["properties"]["apiVersion"] = {"type": "string"}
            json_schema["properties"]["kind"] = {"type": "string"}
            jsonschema.Draft202012Validator.check_schema(json_schema)
            self.versions[f"{self.group}/{version['name']}"] = (schema, jsonschema.Draft202012Validator(json_schema))
        self.cel = celpy.Environment()

    def errors(self, doc):
        """Every problem with one resource, each naming its field."""
        api_version = doc.get("apiVersion")
        if api_version not in self.versions:
            return [f".apiVersion: {api_version!r} is not one of {sorted(self.versions)}"]
        if not (doc.get("metadata") or {}).get("name"):
            return [".metadata.name: required"]
        schema, validator = self.versions[api_version]
        doc = copy.deepcopy(doc)
        apply_defaults(schema, doc)
        found = []
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
            found.append(f"{field or '.'}: {e.message}")
        if not found:
            found = cel_errors(schema, doc, "", self.cel)
        return found


def files(paths):
    for p in map(pathlib.Path, paths):
        yield from sorted(p.glob("*.yaml")) if p.is_dir() else [p]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("crd")
    parser.add_argument("--valid", nargs="*", default=[])
    parser.add_argument("--invalid", nargs="*", default=[])
    args = parser.parse_args()
    crd = Crd(args.crd)
    passed = failed = 0

    for path in files(args.valid):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != crd.kind:
                continue
            name = f"{path}:{doc.get('metadata', {}).get('name')}"
            errors = crd.errors(doc)
            if errors:
                failed += 1
                print(f"FAIL {name} should be valid:\n  " + "\n  ".join(errors))
            else:
                passed += 1
                print(f"ok   {name} is valid")

    for path in files(args.invalid):
        text = path.read_text()
        expects = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("# expect:")]
        docs = [d for d in yaml.safe_load_all(text) if d]
        if len(expects) != 1 or len(docs) != 1:
            failed += 1
            print(f"FAIL {path}: needs exactly one document and one '# expect:' line")
            continue
        errors = crd.errors(docs[0])
        if any(expects[0] in e for e in errors):
            passed += 1
            print(f"ok   {path} is rejected: {next(e for e in errors if expects[0] in e)}")
        else:
            failed += 1
            print(f"FAIL {path} should be rejected with {expects[0]!r}, got: {errors or 'no error'}")

    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
