"""The sandbox's tokens: the demo client's credentials, expiry, use limits and LAPOR!'s
request budget per token."""

from __future__ import annotations

import secrets
from typing import Any

from connector.sandbox import data
from connector.sandbox.faults import ApiFault
from connector.sandbox.model import Token, WorldState

DEMO_CLIENTS = {"mahulu-demo": ("rahasia-demo-6411", data.INSTANSI)}


class Auth(WorldState):
    """Issuing and checking bearer tokens."""

    def issue_token(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not all(
            isinstance(body.get(k), str) and body.get(k) for k in ("client_id", "client_secret")
        ):
            raise ApiFault(
                422,
                "validasi_gagal",
                "client_id dan client_secret wajib diisi.",
                {"client_id": "wajib", "client_secret": "wajib"},
            )
        known = DEMO_CLIENTS.get(body["client_id"])
        if known is None or not secrets.compare_digest(known[0], body["client_secret"]):
            raise ApiFault(401, "kredensial_tidak_valid", "Client id atau secret salah.")
        token = secrets.token_urlsafe(24)
        self.tokens[token] = Token(known[1], self._clock() + self.token_ttl_s)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl_s}

    def authorize(self, header: str | None) -> Token:
        if not header or not header.startswith("Bearer "):
            raise ApiFault(401, "token_tidak_valid", "Token tidak ada atau tidak sah.")
        token = self.tokens.get(header[7:])
        if token is None:
            raise ApiFault(401, "token_tidak_valid", "Token tidak dikenal.")
        now = self._clock()
        f = self.faults
        token.uses += 1
        used_up = bool(f.token_max_uses) and token.uses > f.token_max_uses
        if used_up:
            self.fired["token_max_uses"] += 1
        if now >= token.expires_at or used_up:
            raise ApiFault(401, "token_kedaluwarsa", "Token sudah kedaluwarsa.")
        limit = f.rate_limit_per_minute
        if limit:
            while token.requests and now - token.requests[0] >= 60:
                token.requests.popleft()
            if len(token.requests) >= limit:
                wait = max(1, int(60 - (now - token.requests[0])) + 1)
                raise ApiFault(
                    429,
                    "batas_permintaan",
                    "Batas 60 permintaan per menit.",
                    headers={"Retry-After": str(wait)},
                )
            token.requests.append(now)
        return token
