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

import hashlib
import logging
import time
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


class RecentTokens:
    """Tokens validated in the last ``RECHECK_S``, with their user's name, so that a
    client's burst of calls pays Airflow's validation once: it reads the revocation list
    from Airflow's database, a query per call on the API server's event loop. A token is
    kept no longer than its expiry, so a token revoked (logged out) is refused at most
    ``RECHECK_S`` later, and an expired one at once."""

    RECHECK_S = 5.0
    MAX = 4096

    def __init__(self) -> None:
        self._names: dict[str, tuple[float, str]] = {}  # sha256 of the token -> (until, name)

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def name(self, token: str) -> str | None:
        """The user's name when ``token`` was validated recently and has not expired."""
        hit = self._names.get(self._key(token))
        return hit[1] if hit and hit[0] > time.time() else None

    def remember(self, token: str, name: str) -> None:
        import jwt

        expires = jwt.decode(token, options={"verify_signature": False}).get("exp")
        until = time.time() + self.RECHECK_S
        if isinstance(expires, int | float):
            until = min(until, float(expires))
        if len(self._names) >= self.MAX:
            now = time.time()
            self._names = {k: v for k, v in self._names.items() if v[0] > now}
            if len(self._names) >= self.MAX:
                self._names.clear()
        self._names[self._key(token)] = (until, name)


recent_tokens = RecentTokens()


async def authenticated_caller(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Caller:
    """FastAPI dependency: the caller, or HTTP 401 without a valid Airflow bearer token."""
    if credentials is None or not credentials.credentials:
        raise unauthorized("not authenticated: send 'Authorization: Bearer <Airflow JWT>'")
    token = credentials.credentials
    name = recent_tokens.name(token)
    if name is None:
        user = await user_from_token(token)
        name = user.get_name()
        if not name:
            raise unauthorized("the token names no user", "invalid_token")
        recent_tokens.remember(token, name)
    return Caller(name=name, token=token)
