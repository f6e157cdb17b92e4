"""Shared fixtures for the chart tests: paths and a renderer on top of scripts/helm.py."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "rheo-operator"
sys.path.insert(0, str(REPO / "scripts"))

import helm  # noqa: E402  (scripts/helm.py)

RELEASE = "rheo-operator"
RELEASE_NS = "rheo-system"


class Rendered:
    """The documents of one render, with look-ups by kind and name."""

    def __init__(self, files: dict[str, str]):
        self.files = files
        self.notes = files.get(f"{CHART.name}/templates/NOTES.txt", "")
        self.docs = []
        for path, text in files.items():
            if path.endswith("NOTES.txt"):
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    doc.setdefault("_source", path)
                    self.docs.append(doc)

    def objects(self):
        """Documents without the test's _source key."""
        return [{k: v for k, v in d.items() if k != "_source"} for d in self.docs]

    def kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None, namespace: str | None = None) -> dict:
        found = [d for d in self.kind(kind)
                 if (name is None or d["metadata"]["name"] == name)
                 and (namespace is None or d["metadata"].get("namespace") == namespace)]
        assert len(found) == 1, f"expected one {kind} {name or ''} in {namespace or 'any namespace'}, got {len(found)}"
        return found[0]


def render(values: dict | None = None) -> Rendered:
    return Rendered(helm.render(CHART, values or {}, name=RELEASE, namespace=RELEASE_NS))


@pytest.fixture(scope="session")
def chart_path() -> Path:
    return CHART
