"""Review and trust: ``harbourmaster inspect`` (executes nothing) and ``harbourmaster trust`` (admins)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from harbourmaster.bundle.libraries import LIBRARY_TYPES
from harbourmaster.cli import output
from harbourmaster.cli.common import JsonOption, TokenOption, UrlOption, client

if TYPE_CHECKING:
    from harbourmaster.schemas import ProjectTrust, VersionInspection

_TYPE_NOTES = {
    "skops-default": "trusted by skops",
    "platform": "trusted by the platform",
    "project": "trusted for this project by an admin",
    "project-code": "the project's own code (runs when loaded)",
    "untrusted": "NOT trusted: loading refuses it",
    "forbidden": "FORBIDDEN: never loaded",
    "pickle": "pickle: loading runs whatever it names",
}


def register(app: typer.Typer) -> None:
    """Add the review and trust commands to the main CLI."""
    app.command()(inspect)
    app.command()(trust)


def inspect(
    project: str,
    version: Annotated[str, typer.Argument(help="Version number or 'latest'.")] = "latest",
    file: Annotated[
        str | None, typer.Option("--file", help="Print the source of one code file, e.g. code/features.py.")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Review a version before loading it: manifest, schemas, code, metrics, lineage, model-file types.

    Executes nothing: the model is not loaded and no project module is imported. Loading
    a version (serving, scoring, Client.load) runs its author's code.
    """
    with client(url, token) as hm:
        found = hm.inspect(project, version, file=file)
    if json:
        return output.print_json(found)
    if file is not None:
        print(found.file_text or "", end="")
        return None
    _show(found)
    return None


def _show(found: VersionInspection) -> None:
    out = output.console
    out.print(f"[bold]{escape(found.project)} v{found.number}[/]  digest sha256:{found.digest}")
    out.print(
        f"format {found.format} ({found.model_file}, {found.model_size} bytes), created by "
        f"{escape(found.created_by)} at {output.when(found.created_at)}"
    )
    if found.description:
        out.print(f"description: {escape(found.description)}")
    out.print(f"prepare step: {escape(found.prepare or '-')}")
    out.print(
        "[yellow]Loading this version runs its author's code[/] "
        f"(modules: {escape(', '.join(found.code_modules) or 'none')}); this review ran none of it."
    )
    output.table(
        "code",
        ["file", "bytes", "sha256"],
        [(f.path, f.size, f.sha256[:16]) for f in found.code_files],
    )
    output.table(
        "types the model file names",
        ["type", "status"],
        [(t.name, _TYPE_NOTES.get(t.status, t.status)) for t in found.referenced_types],
    )
    columns = found.input_schema.get("columns", [])
    output.table("input schema", ["column", "dtype"], [(c.get("name"), c.get("dtype")) for c in columns])
    schema = found.output_schema
    out.print(f"output: {schema.get('task', '-')} ({schema.get('dtype', '-')})")
    output.table("metrics", ["metric", "value"], sorted((k, output.number(v)) for k, v in found.metrics.items()))
    if found.metrics_provenance:
        out.print(f"metrics provenance: {escape(str(found.metrics_provenance))}")
    lineage = found.lineage
    out.print(
        f"lineage: data {escape(str(lineage.get('data', {}).get('source', '-')))}, "
        f"parent version {lineage.get('parent_version', '-')}, code {escape(str(lineage.get('code', {})))}"
    )
    out.print(f"trusted types for the project (admin-set): {escape(', '.join(found.trusted_types) or 'none')}")
    out.print(f"read one file with: harbourmaster inspect {found.project} {found.number} --file code/FILE")


def trust(
    project: str,
    add_type: Annotated[
        list[str] | None, typer.Option("--add-type", help="Trust this fully qualified type (repeatable).")
    ] = None,
    remove_type: Annotated[
        list[str] | None, typer.Option("--remove-type", help="Stop trusting this type (repeatable).")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Show, or (admins) change, the types a project's model files may contain. Audited."""
    with client(url, token) as hm:
        if add_type or remove_type:
            result = hm.trust(project, add=add_type or [], remove=remove_type or [])
        else:
            result = hm.trusted_types(project)
    if json:
        return output.print_json(result)
    _show_trust(result)
    return None


def _show_trust(result: ProjectTrust) -> None:
    out = output.console
    out.print(
        f"[bold]{escape(result.project)}[/] trusts (admin-set): {escape(', '.join(result.trusted_types) or 'none')}"
    )
    out.print(f"platform trusts prefixes: {escape(', '.join(result.platform_trusted_types))}")
    out.print(f"platform trusts exactly: {escape(', '.join(sorted(LIBRARY_TYPES)))}")
    out.print(f"pickle model files: {'accepted (HARBOURMASTER_TRUST_PICKLE)' if result.trust_pickle else 'refused'}")
