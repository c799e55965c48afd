"""Compiling a template and publishing its plan: shared by the CLI and the REST API.

Registration stores the plan (system of record) and writes its parse-time projection
where the DAG files find it. Nothing here imports airflow.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from stratoflow.errors import TemplateError
from stratoflow.plan.model import Plan


def catalogue_dir() -> Path:
    """The template catalogue: ``include/templates``."""
    from stratoflow.config import include_dir

    return include_dir() / "templates"


def load(path: str, inputs: dict[str, Any] | None) -> Any:
    """Load and bind a template. ``inputs=None``: no run yet, so required inputs may be
    missing; a dict (even empty) is a run's inputs."""
    from stratoflow.tosca import load_topology

    return load_topology(path, inputs)


def compile_template(path: str, inputs: dict[str, Any] | None = None) -> tuple[Any, Plan]:
    """(topology, plan) of a template; raises TemplateError listing every fault."""
    from stratoflow.plan import compile_plan

    topology = load(path, inputs)
    return topology, compile_plan(topology, Path(path).resolve().parent)


def register_template(path: str, inputs: dict[str, Any] | None = None) -> tuple[Any, Plan]:
    """Compile a template and store its plan where the DAG files find it.

    Validation happens before anything is written, so a bad template or bad inputs leave
    no trace.
    """
    topology, plan = compile_template(path, inputs)
    publish(plan, Path(path).read_text(encoding="utf-8"))
    return topology, plan


def register_text(
    text: str, inputs: dict[str, Any] | None = None, name_hint: str = "deployment"
) -> tuple[Any, Plan]:
    """Compile and store a template given as text (the INDIGO API's ``template``).

    It has no directory of its own: its imports and artifacts resolve in the catalogue's
    (bundled type libraries, catalogue files), as if it were one more catalogue file.
    """
    from stratoflow.plan import compile_plan
    from stratoflow.tosca import load_topology_text

    base = catalogue_dir()
    topology = load_topology_text(text, base, inputs, name_hint=name_hint)
    plan = compile_plan(topology, base)
    publish(plan, text)
    return topology, plan


def publish(plan: Plan, template_text: str) -> None:
    """Store a compiled plan (system of record), then write its parse-time projection.

    A plan this process has published to the same store and plans directory, whose file is
    still there, is not written again: the API server publishes the same catalogue plan
    on every POST, and the two writes were a third of its time."""
    from stratoflow.plan.registry import plans_dir, write_plan
    from stratoflow.store import Store, default_store_url

    directory = plans_dir()
    key = (default_store_url(), str(directory), plan["hash"])
    if key in _published and (directory / f"{plan['dag_id']}.json").is_file():
        return
    # Closed at once: a long-lived caller (the API server) must not keep an engine per call.
    with Store.open() as store:
        store.save_plan(plan["hash"], plan["name"], plan["dag_id"], plan, template_text)
    write_plan(plan, directory)
    _published.add(key)


_published: set[tuple[str, str, str]] = set()


def register(path: str, pairs: list[str] | None = None, run: bool = False) -> tuple[Any, Plan]:
    """The CLI's form: inputs as ``NAME=VALUE`` strings; ``run`` means a run's inputs, so
    required inputs must be given."""
    from stratoflow.tosca import parse_cli_inputs

    inputs = parse_cli_inputs(pairs or [])
    return register_template(path, inputs if (run or inputs) else None)


def register_catalogue(out: Callable[[str], Any] = print) -> list[str]:
    """Register every catalogue template; a broken one is reported and skipped."""
    dag_ids = []
    for path in sorted(catalogue_dir().glob("*.yaml")):
        try:
            dag_ids.append(register(str(path))[1]["dag_id"])
        except TemplateError as exc:
            out(f"catalogue template {path.name} skipped:\n{exc}")
    return dag_ids
