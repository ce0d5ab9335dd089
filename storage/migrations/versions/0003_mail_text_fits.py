"""domains as long as mailboxes: a scope key is never cut short

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# A domain is the part of a mailbox (at most 320 characters) after its '@'; mail carries
# domains beyond 255 characters, which PostgreSQL refused with DataError (an SMTP 451).
_DOMAIN_COLUMNS = (('message_domains', 'domain'), ('domain_policies', 'domain'))


def _resize(old: int, new: int) -> None:
    for table, column in _DOMAIN_COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=sa.String(length=old), type_=sa.String(length=new),
                                  existing_nullable=False)


def upgrade() -> None:
    _resize(255, 320)


def downgrade() -> None:
    # Fails, rather than truncating, if a longer domain has been stored since (PostgreSQL).
    _resize(320, 255)
