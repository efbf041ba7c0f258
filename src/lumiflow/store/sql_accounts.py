"""Users and tokens of the embedded identity provider, and the dashboard's sessions."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from lumiflow.common.errors import AlreadyExists, NotFound
from lumiflow.common.timeutil import utcnow
from lumiflow.store import schema
from lumiflow.store.model import Session, Token, User
from lumiflow.store.sql_base import SQLBase


class SQLAccounts(SQLBase):
    # --- users and tokens ----------------------------------------------------------

    def create_user(self, name: str, groups: builtins.list[str]) -> User:
        now = utcnow()
        with self._write() as (conn, _):
            if conn.execute(sa.select(schema.users.c.name).where(schema.users.c.name == name)).first():
                raise AlreadyExists(f"user {name!r} already exists", field="name")
            conn.execute(schema.users.insert().values(name=name, groups=list(groups), created_at=now))
        return User(name, list(groups), now)

    def update_user(self, name: str, groups: builtins.list[str]) -> User:
        with self._write() as (conn, _):
            result = conn.execute(
                sa.update(schema.users).where(schema.users.c.name == name).values(groups=list(groups))
            )
            if result.rowcount != 1:
                raise NotFound(f"user {name!r} not found")
        return self.get_user(name)

    def get_user(self, name: str) -> User:
        with self._read() as conn:
            row = conn.execute(sa.select(schema.users).where(schema.users.c.name == name)).first()
        if row is None:
            raise NotFound(f"user {name!r} not found")
        return User(row.name, list(row.groups), row.created_at)

    def list_users(self) -> builtins.list[User]:
        with self._read() as conn:
            rows = conn.execute(sa.select(schema.users).order_by(schema.users.c.name))
            return [User(r.name, list(r.groups), r.created_at) for r in rows]

    def delete_user(self, name: str) -> None:
        now = utcnow()
        with self._write() as (conn, _):
            result = conn.execute(sa.delete(schema.users).where(schema.users.c.name == name))
            if result.rowcount != 1:
                raise NotFound(f"user {name!r} not found")
            conn.execute(
                sa.update(schema.tokens)
                .where(schema.tokens.c.user_name == name, schema.tokens.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )

    @staticmethod
    def _token(row: Any) -> Token:
        return Token(row.id, row.user_name, row.description, row.issued_at, row.expires_at, row.revoked_at)

    def add_token(
        self, *, token_id: str, user: str, description: str, issued_at: Any, expires_at: Any
    ) -> Token:
        with self._write() as (conn, _):
            conn.execute(
                schema.tokens.insert().values(
                    id=token_id,
                    user_name=user,
                    description=description,
                    issued_at=issued_at,
                    expires_at=expires_at,
                    revoked_at=None,
                )
            )
        return Token(token_id, user, description, issued_at, expires_at, None)

    def get_token(self, token_id: str) -> Token:
        with self._read() as conn:
            row = conn.execute(sa.select(schema.tokens).where(schema.tokens.c.id == token_id)).first()
        if row is None:
            raise NotFound(f"token {token_id!r} not found")
        return self._token(row)

    def list_tokens(self, *, user: str | None = None) -> builtins.list[Token]:
        query = sa.select(schema.tokens).order_by(schema.tokens.c.issued_at)
        if user is not None:
            query = query.where(schema.tokens.c.user_name == user)
        with self._read() as conn:
            return [self._token(r) for r in conn.execute(query)]

    def revoke_token(self, token_id: str) -> Token:
        now = utcnow()
        with self._write() as (conn, _):
            row = conn.execute(sa.select(schema.tokens).where(schema.tokens.c.id == token_id)).first()
            if row is None:
                raise NotFound(f"token {token_id!r} not found")
            if row.revoked_at is None:
                # Guarded, so that of two concurrent revocations the first one's time stays.
                conn.execute(
                    sa.update(schema.tokens)
                    .where(schema.tokens.c.id == token_id, schema.tokens.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
        return self.get_token(token_id)

    def revoked_token_ids(self) -> set[str]:
        with self._read() as conn:
            rows = conn.execute(sa.select(schema.tokens.c.id).where(schema.tokens.c.revoked_at.is_not(None)))
            return {r[0] for r in rows}

    # --- dashboard sessions ----------------------------------------------------------

    @staticmethod
    def _session(row: Any) -> Session:
        return Session(row.id, row.user_name, dict(row.data), row.created_at, row.expires_at)

    def create_session(
        self, session_id: str, *, user: str | None, data: dict[str, Any], expires_at: datetime
    ) -> Session:
        now = utcnow()
        with self._write() as (conn, _):
            conn.execute(
                schema.sessions.insert().values(
                    id=session_id, user_name=user, data=data, created_at=now, expires_at=expires_at
                )
            )
        return Session(session_id, user, dict(data), now, expires_at)

    def get_session(self, session_id: str) -> Session:
        with self._read() as conn:
            row = conn.execute(sa.select(schema.sessions).where(schema.sessions.c.id == session_id)).first()
        if row is None:
            raise NotFound("session not found")
        return self._session(row)

    def update_session(self, session_id: str, *, data: dict[str, Any], user: str | None = None) -> Session:
        values: dict[str, Any] = {"data": data}
        if user is not None:
            values["user_name"] = user
        with self._write() as (conn, _):
            result = conn.execute(
                sa.update(schema.sessions).where(schema.sessions.c.id == session_id).values(**values)
            )
            if result.rowcount != 1:
                raise NotFound("session not found")
        return self.get_session(session_id)

    def delete_session(self, session_id: str) -> None:
        with self._write() as (conn, _):
            conn.execute(sa.delete(schema.sessions).where(schema.sessions.c.id == session_id))

    def delete_expired_sessions(self, now: datetime) -> int:
        with self._write() as (conn, _):
            result = conn.execute(sa.delete(schema.sessions).where(schema.sessions.c.expires_at < now))
            return int(result.rowcount or 0)
