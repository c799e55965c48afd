"""Bearer-token authentication with Airflow's own JWTs.

Airflow mounts plugin FastAPI apps without any authentication, so each protected route
depends on :func:`authenticated_caller`. The token is one issued by Airflow's
``POST /auth/token``; we validate it with the configured auth manager's
``get_user_from_token`` (signature, expiry, audience, revocation list), the same code path
Airflow's own ``/api/v2`` uses, so there is no second key or secret to keep in sync.

Tokens are never logged: the :class:`Caller` hides it from ``repr`` and error messages
carry only the kind of failure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

log = logging.getLogger(__name__)

# auto_error=False: we answer 401 (not FastAPI's 403) with a WWW-Authenticate header.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="AirflowJWT",
    description="A JWT from Airflow's `POST /auth/token`.",
)


@dataclass(frozen=True)
class Caller:
    """The authenticated user; ``token`` is forwarded to Airflow to act on their behalf."""

    name: str
    token: str = field(repr=False)


def unauthorized(message: str, error: str | None = None) -> HTTPException:
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=message,
        headers={"WWW-Authenticate": challenge},
    )


def _auth_manager() -> Any:
    """Airflow's auth manager. Inside the API server it is already initialised; elsewhere
    (an app run on its own) create it from the Airflow configuration."""
    from airflow.api_fastapi import app as airflow_app

    try:
        return airflow_app.get_auth_manager()
    except RuntimeError:
        return airflow_app.create_auth_manager()


async def user_from_token(token: str) -> Any:
    """Airflow's user behind ``token``; raises HTTP 401 when the token is not valid."""
    from jwt import ExpiredSignatureError, InvalidTokenError

    try:
        return await _auth_manager().get_user_from_token(token)
    except ExpiredSignatureError:
        raise unauthorized("token expired", "invalid_token") from None
    except InvalidTokenError:
        # `from None`: the chained exception would only repeat why; never the token.
        raise unauthorized("invalid token", "invalid_token") from None


async def authenticated_caller(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Caller:
    """FastAPI dependency: the caller, or HTTP 401 without a valid Airflow bearer token."""
    if credentials is None or not credentials.credentials:
        raise unauthorized("not authenticated: send 'Authorization: Bearer <Airflow JWT>'")
    user = await user_from_token(credentials.credentials)
    name = user.get_name()
    if not name:
        raise unauthorized("the token names no user", "invalid_token")
    return Caller(name=name, token=credentials.credentials)
