#!/usr/bin/env python3
"""Helm without the helm binary: template, lint and show CRDs of a chart offline.

Uses the real Helm Go library through helm-python-sdk (pip), so rendering and linting are
Helm's own. Run it with the project's venv: `$(scripts/pyenv.sh)/python scripts/helm.py ...`.

  helm.py template CHART [-n NS] [--name NAME] [-f VALUES]... [--set K=V]... [--include-crds]
  helm.py lint     CHART [-f VALUES]... [--set K=V]... [--strict] [--kube-version v1.37.0]
  helm.py crds     CHART

`template` prints manifests like `helm template` (`---` and `# Source:` headers), NOTES excluded.
Exit status: 0 ok, 1 render/lint error (message on stderr), 2 usage error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import helm_python as helm

DEFAULT_KUBE_VERSION = "v1.37.0"


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing for user values: maps merge key by key, everything else replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def collect_values(files: list[str], sets: list[str], set_strings: list[str]) -> dict[str, Any]:
    """-f files in order, then --set, then --set-string (as helm does)."""
    values: dict[str, Any] = {}
    for f in files:
        values = deep_merge(values, helm.values_from_yaml(Path(f).read_text()) or {})
    for s in sets:
        values = deep_merge(values, helm.parse_set_string(s))
    for s in set_strings:
        values = deep_merge(values, helm.parse_set_literal(s))
    return values


def render(chart: str | Path, values: dict[str, Any] | None = None, *, name: str = "rheo-operator",
           namespace: str = "rheo-system") -> dict[str, str]:
    """Template path -> rendered manifest text (empty documents dropped, NOTES.txt kept)."""
    out = helm.Chart.load(str(chart)).render(values or {}, name=name, namespace=namespace,
                                              is_install=True)
    return {path: text for path, text in sorted(out.items()) if text.strip()}


def template_text(chart: str | Path, values: dict[str, Any] | None = None, *, name: str = "rheo-operator",
                  namespace: str = "rheo-system", include_crds: bool = False) -> str:
    parts = []
    if include_crds:
        for crd in helm.Chart.load(str(chart)).crds:
            parts.append(f"---\n# Source: {crd['name']}\n{crd['data'].strip()}\n")
    for path, text in render(chart, values, name=name, namespace=namespace).items():
        if path.endswith("NOTES.txt"):
            continue
        body = text.strip("\n")
        # a template may hold several documents; keep helm's one-header-per-template layout
        parts.append(f"---\n# Source: {path}\n{body.removeprefix('---').lstrip(chr(10))}\n")
    return "".join(parts)


def lint(chart: str | Path, values: dict[str, Any] | None = None, *, strict: bool = True,
         kube_version: str = DEFAULT_KUBE_VERSION) -> list[dict[str, Any]]:
    report = helm.lint(str(chart), values or {}, strict=strict, kube_version=kube_version)
    return report.get("messages") or []


SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for cmd in ("template", "lint", "crds"):
        sp = sub.add_parser(cmd)
        sp.add_argument("chart")
        if cmd == "crds":
            continue
        sp.add_argument("-f", "--values", action="append", default=[], metavar="FILE")
        sp.add_argument("--set", action="append", default=[], metavar="K=V")
        sp.add_argument("--set-string", action="append", default=[], metavar="K=V")
        if cmd == "template":
            sp.add_argument("-n", "--namespace", default="rheo-system")
            sp.add_argument("--name", default="rheo-operator")
            sp.add_argument("--include-crds", action="store_true")
        else:
            sp.add_argument("--strict", action="store_true", help="warnings fail the lint")
            sp.add_argument("--kube-version", default=DEFAULT_KUBE_VERSION)
    args = p.parse_args(argv)

    try:
        if args.cmd == "crds":
            for crd in helm.Chart.load(args.chart).crds:
                sys.stdout.write(f"---\n# Source: {crd['name']}\n{crd['data'].strip()}\n")
            return 0
        values = collect_values(args.values, args.set, args.set_string)
        if args.cmd == "template":
            sys.stdout.write(template_text(args.chart, values, name=args.name, namespace=args.namespace,
                                           include_crds=args.include_crds))
            return 0
        messages = lint(args.chart, values, strict=args.strict, kube_version=args.kube_version)
        worst = 0
        for m in messages:
            sev = int(m.get("severity", 0))
            worst = max(worst, sev)
            print(f"[{SEVERITY.get(sev, sev)}] {m.get('path', '')}: {m.get('error', '')}")
        failed = worst >= 3 or (args.strict and worst >= 2)
        print(f"1 chart(s) linted, {'1 chart(s) failed' if failed else '0 chart(s) failed'}")
        return 1 if failed else 0
    except helm.HelmError as e:
        print(f"helm.py {args.cmd}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
