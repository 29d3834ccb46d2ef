"""The ``external`` backend: a server someone else runs (``--kt-url``); we only check it answers."""

from __future__ import annotations

import httpx

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.server.base import ServerHandle


def external_server(url: str, timeout_s: float = 10.0) -> ServerHandle:
    """A handle for ``url`` after one ``GET /v1/models`` proves it is an OpenAI-style server."""
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout_s, connect=3.0), trust_env=False) as client:
            response = client.get(f"{url}/v1/models")
    except httpx.ConnectError as exc:
        raise KtInterfError(
            f"server at --kt-url {url} is unreachable ({exc or 'connection refused'})",
            "start the server first or correct --kt-url (scheme, host and port)",
        ) from exc
    except httpx.HTTPError as exc:
        raise KtInterfError(
            f"server at --kt-url {url} did not answer GET /v1/models ({type(exc).__name__})",
            "check that it is an OpenAI-compatible server and that it has finished loading",
        ) from exc
    if response.status_code != 200:
        raise KtInterfError(
            f"server at --kt-url {url} answered GET /v1/models with HTTP {response.status_code}",
            "point --kt-url at the server's base URL (without /v1) and wait until it has loaded",
        )
    return ServerHandle(url=url, backend="external", description=f"external server {url}")
