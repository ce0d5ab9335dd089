"""text only the catalogue holds is escaped: double the backslashes already there

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# From now on a backslash in these columns starts an escape (storage.text.escaped, and
# envelope text at the SMTP edge): rows written before keep their meaning once their
# backslashes are doubled. Few rows have any, so each is found with LIKE and rewritten.
_TEXT_COLUMNS = (('envelopes', 'mail_from'), ('envelopes', 'helo'), ('envelopes', 'source_detail'),
                 ('import_checkpoints', 'path'))


def _rewrite(old: str, new: str) -> None:
    for table, column in _TEXT_COLUMNS:
        op.execute(sa.text(f"UPDATE {table} SET {column} = replace({column}, :old, :new) WHERE {column} LIKE :has ESCAPE '!'")
                   .bindparams(old=old, new=new, has='%\\%'))
    # rcpt_to is a JSON list: its strings are rewritten one by one, never its JSON text.
    envelopes = sa.table('envelopes', sa.column('id'), sa.column('rcpt_to', sa.JSON))
    connection = op.get_bind()
    rows = connection.execute(sa.select(envelopes.c.id, envelopes.c.rcpt_to)
                              .where(sa.cast(envelopes.c.rcpt_to, sa.Text).like('%\\%', escape='!'))).all()
    for envelope_id, recipients in rows:
        connection.execute(sa.update(envelopes).where(envelopes.c.id == envelope_id)
                           .values(rcpt_to=[recipient.replace(old, new) for recipient in recipients]))


def upgrade() -> None:
    _rewrite('\\', '\\\\')


def downgrade() -> None:
    # Escapes of NUL and of bytes that are not UTF-8 stay: the columns could not hold them before.
    _rewrite('\\\\', '\\')
