"""Where actors run (``--kt-actors-in``): on this host, or in containers on the server's Docker engine.

The policy only; the container actors themselves are in ``container.py``. Auto places actors in
containers beside a server on a remote engine, where loading this host would miss the server.
"""

from __future__ import annotations

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.system import docker_engine


def resolve_placement(actors_in: str, backend: str) -> str:
    """``host`` or ``docker`` for ``--kt-actors-in``: auto is docker beside a remote engine's server."""
    if actors_in in ("host", "docker"):
        return actors_in
    return "docker" if backend == "docker" and not docker_engine.engine_is_local() else "host"


def host_only_refusal(actors_in: str, backend: str, what: str) -> KtInterfError | None:
    """Why an actor that cannot run in a container must not run here, or None where it may.

    One rule for both the fixtures (which raise it) and the experiment rows (which skip with it):
    under docker placement such an actor would load the runner, not the engine's host.
    """
    if resolve_placement(actors_in, backend) != "docker":
        return None
    return KtInterfError(
        f"the {what} actor runs only on this host, and actors are placed in containers on the "
        f"Docker engine (--kt-actors-in={actors_in}, engine {docker_engine.engine_address()})",
        "run pytest on the engine's host, or pass --kt-actors-in host to load this host anyway",
    )
