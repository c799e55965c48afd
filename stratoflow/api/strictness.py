"""What both apps add to FastAPI so that they answer as their OpenAPI documents say:
unknown query parameters are refused (FastAPI ignores them), the 401 of every
authenticated route is documented (FastAPI documents the bearer scheme, not the answer
without a token), and a 405 lists every method of its path (Starlette lists only those of
the first route that matched the path)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.dependencies.utils import get_flat_dependant
from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

UNAUTHORIZED = {
    "description": "no token, or one Airflow does not accept (`WWW-Authenticate: Bearer`)"
}
UNREADABLE_BODY = {"description": "the body could not be read as JSON"}
# id of a route's dependant -> it (held, so that its id is never reused) and the query
# parameters it declares
_declared: dict[int, tuple[Any, frozenset[str]]] = {}


def refuse_unknown_query(request: Request) -> None:
    """422 naming each query parameter the route does not declare: a typo such as
    ``?sizes=5`` must not silently give the default page."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    cached = _declared.get(id(dependant))
    if cached is None:  # routes are made once: walk each one's dependencies once
        names = frozenset(p.alias for p in get_flat_dependant(dependant).query_params)
        cached = _declared[id(dependant)] = (dependant, names)
    known = cached[1]
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise HTTPException(
            status_code=422,
            detail=[
                {
                    "loc": ["query", name],
                    "msg": "unknown query parameter",
                    "type": "extra_forbidden",
                }
                for name in unknown
            ],
        )


def document_unauthorized(app: FastAPI) -> None:
    """Add the 401 answer to every operation that requires the bearer token, and the 400
    to every one that takes a body (FastAPI answers 400 to a body it cannot decode)."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            for operations in plain().get("paths", {}).values():  # plain() caches it
                for operation in operations.values():
                    responses = operation.setdefault("responses", {})
                    if operation.get("security"):
                        responses.setdefault("401", UNAUTHORIZED)
                    if operation.get("requestBody"):
                        responses.setdefault("400", UNREADABLE_BODY)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def answer_as_documented(app: FastAPI) -> None:
    """The 401s documented and the 405s' ``Allow`` complete. (Refusing unknown query
    parameters is the app's dependency: ``FastAPI(dependencies=[Depends(
    refuse_unknown_query)])``.)"""
    document_unauthorized(app)
    app.add_exception_handler(StarletteHTTPException, _allow_every_method)


async def _allow_every_method(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        methods: set[str] = set()
        for route in request.app.router.routes:
            match, _child = route.matches(request.scope)
            if match != Match.NONE:
                methods |= getattr(route, "methods", None) or set()
        if methods:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(methods))}
    return await http_exception_handler(request, exc)
