"""The store: Kubernetes-style resources, events, users, tokens and dashboard sessions in SQL (infra layer)."""

from lumiflow.store.base import ResourceStore, StatusWrite
from lumiflow.store.model import Change, Event, ListResult, ObjectRef, Session, StoredObject, Token, User
from lumiflow.store.selectors import Selector, parse_selector
from lumiflow.store.sql import SQLStore, open_store

__all__ = [
    "Change",
    "Event",
    "ListResult",
    "ObjectRef",
    "ResourceStore",
    "SQLStore",
    "Selector",
    "Session",
    "StatusWrite",
    "StoredObject",
    "Token",
    "User",
    "open_store",
    "parse_selector",
]
