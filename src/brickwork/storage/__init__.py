"""Stores: API keys and the audit log, in SQLite (default) or PostgreSQL.

Open one from a URL (``sqlite:///path``, a file path, ``postgresql://...``) with
:func:`open_key_store` or :func:`open_audit_log`; the defaults come from
``BRICKWORK_KEYS``, ``BRICKWORK_AUDIT`` and ``BRICKWORK_HOME``
(see :mod:`brickwork.storage.urls`).
"""

from brickwork.storage.audit import (
    AuditLog,
    PostgresAuditLog,
    SQLiteAuditLog,
    VerifyReport,
    open_audit_log,
)
from brickwork.storage.keys import ApiKey, KeyStore, PostgresKeyStore, SQLiteKeyStore, open_key_store
from brickwork.storage.urls import default_audit_url, default_keys_url

__all__ = [
    "ApiKey",
    "AuditLog",
    "KeyStore",
    "PostgresAuditLog",
    "PostgresKeyStore",
    "SQLiteAuditLog",
    "SQLiteKeyStore",
    "VerifyReport",
    "default_audit_url",
    "default_keys_url",
    "open_audit_log",
    "open_key_store",
]
