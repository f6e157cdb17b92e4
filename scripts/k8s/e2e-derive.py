"""Derives the manifests make e2e runs from an example (scripts/k8s/e2e.sh).

    e2e-derive.py EXAMPLE.yaml PATCH.json  > manifests.yaml

Each document of EXAMPLE whose kind is a key of PATCH is deep-merged with PATCH[kind] (objects
key by key, the patch's lists replace the example's; a null value deletes the key); documents
of other kinds are left out, and so are patches for kinds EXAMPLE lacks (but not FlinkJob). So what runs is the example as a user applies it, changed only
where the test needs it (image tag, credentials, the job's input and output, smaller requests
for a 2-core node).
"""

import json
import sys

import yaml


def merge(base, patch):
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return patch
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def main():
    example, patch_file = sys.argv[1], sys.argv[2]
    with open(patch_file) as f:
        patches = json.load(f)
    with open(example) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    out = [merge(d, patches[d["kind"]]) for d in docs if d.get("kind") in patches]
    if not any(d["kind"] == "FlinkJob" for d in out):
        sys.exit(f"{example}: no FlinkJob")
    yaml.safe_dump_all(out, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
