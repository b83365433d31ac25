"""Access stage: who may call which HTTP route (bearer tokens and their scopes).

`http.auth_token` allows everything; each of `http.tokens` allows its scope:
`read` the GET routes (the page and /metrics among them), `write` POST /logs
only. Tokens are compared in constant time, against every token, so the time
an answer takes tells nothing about a guess. Pure: tokens come in the config.
"""

from __future__ import annotations

import hmac

from collector.config import HttpConfig

UNAUTHORIZED = "authorization: expected the header Authorization: Bearer <token>"


def needed_scope(method: str, path: str) -> str:
    """`write` for POST /logs, `read` for everything else."""
    return "write" if method == "POST" and path == "/logs" else "read"


def check(http: HttpConfig, authorization: str, method: str, path: str) -> tuple[int, str] | None:
    """None when the request may go on, else (401 or 403, the error message)."""
    if not http.auth_token and not http.tokens:
        return None
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return 401, UNAUTHORIZED
    guess = given.strip().encode()
    allowed = False
    if http.auth_token:
        allowed = hmac.compare_digest(guess, http.auth_token.encode())
    scopes = set()
    for token in http.tokens:  # every one, whatever matched before
        if hmac.compare_digest(guess, token.token.encode()):
            scopes.add(token.scope)
    if allowed:
        return None
    if not scopes:
        return 401, UNAUTHORIZED
    need = needed_scope(method, path)
    if need in scopes:
        return None
    have = ", ".join(sorted(scopes))
    return 403, f"authorization: this token's scope is {have}; {method} {path} needs {need}"
