"""scope keys in the one normalised spelling; the messages whose keys changed are indexed again

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa

from addresses import domain_key, mailbox_key
from storage.text import storable


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# Rows written before the one normaliser (package addresses) may spell a key another way:
# "Alice@Example.COM.", '"bob"@example.org', an A-label domain. Scope filters now look up
# the normalised key, so such a row would hide its message from the scope it belongs to.
# Each distinct old key is rewritten to its key (rows that already exist under it are
# kept once), and its messages go on the index outbox so the index gets the new keys too.
_CHUNK = 500


def _rekey(table: str, column: str, key) -> set[int]:  # type: ignore[no-untyped-def]
    connection = op.get_bind()
    touched: set[int] = set()
    for (old,) in connection.execute(sa.text(f"SELECT DISTINCT {column} FROM {table}")).all():
        new = storable(key(old))
        if new == old:
            continue
        touched.update(connection.scalars(sa.text(f"SELECT message_id FROM {table} WHERE {column} = :old"), {"old": old}))
        if new:  # a key that is no mailbox at all ("") is dropped, as the journal would not file it
            connection.execute(sa.text(
                f"INSERT INTO {table} (message_id, {column}) SELECT message_id, :new FROM {table} "
                f"WHERE {column} = :old ON CONFLICT DO NOTHING"), {"old": old, "new": new})
        connection.execute(sa.text(f"DELETE FROM {table} WHERE {column} = :old"), {"old": old})
    return touched


def upgrade() -> None:
    touched = _rekey('message_mailboxes', 'mailbox', mailbox_key) | _rekey('message_domains', 'domain', domain_key)
    connection = op.get_bind()
    for (old,) in connection.execute(sa.text("SELECT domain FROM domain_policies")).all():
        new = storable(domain_key(old))
        if not new or new == old:
            continue
        if connection.scalar(sa.text("SELECT count(*) FROM domain_policies WHERE domain = :new"), {"new": new}):
            # Two spellings of one domain had a policy each; the one already under the key wins.
            connection.execute(sa.text("DELETE FROM domain_policies WHERE domain = :old"), {"old": old})
        else:
            connection.execute(sa.text("UPDATE domain_policies SET domain = :new WHERE domain = :old"), {"old": old, "new": new})
    ids = sorted(touched)
    now = datetime.now(timezone.utc)
    for start in range(0, len(ids), _CHUNK):
        connection.execute(sa.text(
            "INSERT INTO index_outbox (message_id, enqueued_at, generation, attempts, last_error) "
            "VALUES (:id, :now, 1, 0, '') ON CONFLICT (message_id) DO UPDATE SET "
            "generation = index_outbox.generation + 1, enqueued_at = :now, attempts = 0, last_error = ''"
        ).bindparams(sa.bindparam("now", type_=sa.DateTime(timezone=True))),
            [{"id": message_id, "now": now} for message_id in ids[start:start + _CHUNK]])


def downgrade() -> None:
    # The old spellings are not kept: the keys stay normalised, which every version reads.
    pass
