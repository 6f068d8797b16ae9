"""The runtime role's privileges: DML on the tables, only INSERT and SELECT on the audit trail, no
UPDATE of the events outbox.

Migrations run as the owner role, which owns every object; the app and the worker connect as the
runtime role, which owns nothing. So ALTER, DROP, DISABLE TRIGGER and TRUNCATE (and, on the two
audit tables, UPDATE and DELETE) are refused to it by PostgreSQL itself. Applied by the owner
after every migration, so a new table is covered as soon as it exists.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

AUDIT_TABLES = ("auth_audit_logs", "provider_audit_logs")
# Appended to and pruned, never rewritten: an event once read stays what it was.
NO_UPDATE_TABLES = ("events",)
# SECURITY DEFINER functions (owned by the owner) the runtime role may call.
RUNTIME_FUNCTIONS = ("analyze_transactions()",)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def grant_runtime_privileges(connection: Connection, runtime_role: str) -> None:
    """Reset the runtime role's privileges in schema public to exactly the intended ones."""
    role = _ident(runtime_role)
    statements = [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        *(f"REVOKE UPDATE, DELETE ON {_ident(table)} FROM {role}" for table in AUDIT_TABLES),
        *(f"REVOKE UPDATE ON {_ident(table)} FROM {role}" for table in NO_UPDATE_TABLES),
        *(f"GRANT EXECUTE ON FUNCTION {function} TO {role}" for function in RUNTIME_FUNCTIONS),
    ]
    for statement in statements:
        connection.execute(text(statement))
