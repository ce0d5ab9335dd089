"""Per-domain archive policies: how long a domain's mail is kept, and whether S3 Object Lock enforces it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from addresses import domain_key
from retention.audit import record
from storage.blobstore import LockMode, LockRequest
from storage.sql import upsert
from storage.tables import domain_policies
from storage.timeutil import utcnow


class PolicyError(ValueError):
    """A policy that cannot be stored as given."""


@dataclass(frozen=True)
class Policy:
    domain: str
    retention_days: int | None  # None: keep forever
    object_lock_mode: LockMode | None  # None: retention is enforced by postvault alone, not by S3


def get(*, session: Session, domain: str) -> Policy | None:
    row = session.execute(select(domain_policies).where(domain_policies.c.domain == _normalise(domain))).first()
    return _frozen(row) if row is not None else None


def set(  # noqa: A001  (policies.set reads as what it does)
    *,
    session: Session,
    domain: str,
    retention_days: int | None,
    object_lock_mode: LockMode | str | None,
    actor: str,
) -> Policy:
    """Create or replace a domain's policy, audited in the caller's transaction.

    Applies to messages journaled from now on. Objects already written keep the
    Object Lock they got: S3 lets nobody shorten a COMPLIANCE lock, and a purge is
    what ends the life of a message whose lock has run out.
    """
    name = _normalise(domain)
    if retention_days is not None and (isinstance(retention_days, bool) or retention_days <= 0):
        raise PolicyError(f"retention_days must be a positive number of days or None (keep forever), not {retention_days!r}")
    try:
        mode = LockMode(object_lock_mode) if object_lock_mode is not None else None
    except ValueError:
        raise PolicyError(f"object_lock_mode must be GOVERNANCE, COMPLIANCE or None, not {object_lock_mode!r}") from None
    if mode is not None and retention_days is None:
        # An S3 lock needs a date; keeping something forever under WORM is a legal hold.
        raise PolicyError("an Object Lock needs retention_days; to keep mail forever use a legal hold")

    now = utcnow()
    row = session.execute(select(domain_policies).where(domain_policies.c.domain == name)).first()
    before = _frozen(row) if row is not None else None
    changes = {"retention_days": retention_days, "object_lock_mode": mode.value if mode else None, "updated_at": now}
    upsert(session, domain_policies, [{"domain": name, "created_at": now, **changes}], keys=["domain"], update=changes)
    after = Policy(domain=name, retention_days=retention_days, object_lock_mode=mode)
    record(session, actor=actor, action="policy.set", detail={"domain": name, "before": _detail(before), "after": _detail(after)})
    return after


def with_object_lock(*, session: Session) -> dict[str, Policy]:
    """The policies of every domain that uses Object Lock, by domain: one small query,
    read once per journal batch."""
    rows = session.execute(
        select(domain_policies.c.domain, domain_policies.c.retention_days, domain_policies.c.object_lock_mode)
        .where(domain_policies.c.object_lock_mode.is_not(None))
    )
    return {domain: Policy(domain, days, LockMode(mode)) for domain, days, mode in rows}


def object_lock_for(policies: Iterable[Policy], *, received_at: datetime, now: datetime) -> LockRequest | None:
    """The Object Lock a message needs, given the policies of the domains it belongs to.

    One message is one object, whatever number of domains share it, and an object has
    one retention. The longest retention and the strictest mode (COMPLIANCE over
    GOVERNANCE) are the only choice that keeps every domain's promise: a longer or
    stricter lock never breaks a shorter or laxer one, the reverse would. A laxer
    domain's copy may so be locked longer or harder than it asked, never less.

    None when no domain uses Object Lock, or when the retention has already run out
    (an import of old mail: S3 refuses a retain-until date in the past).
    """
    lock: LockRequest | None = None
    for policy in policies:
        if policy.object_lock_mode is None or policy.retention_days is None:
            continue
        lock = LockRequest(policy.object_lock_mode, received_at + timedelta(days=policy.retention_days)).combine(lock)
    if lock is None or lock.retain_until <= now:
        return None
    return lock


def _normalise(domain: str) -> str:
    # The key message_domains files mail under, so that the journal finds the policy.
    name = domain_key(domain)
    if not name or "@" in name or any(c.isspace() for c in name) or len(name) > 255:
        raise PolicyError(f"not a domain name: {domain!r}")
    return name


def _frozen(row: Row[Any]) -> Policy:
    mode = LockMode(row.object_lock_mode) if row.object_lock_mode else None
    return Policy(domain=row.domain, retention_days=row.retention_days, object_lock_mode=mode)


def _detail(policy: Policy | None) -> dict[str, object] | None:
    if policy is None:
        return None
    return {"retention_days": policy.retention_days, "object_lock_mode": policy.object_lock_mode}
