"""domain policies: per-domain retention and S3 Object Lock mode

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('domain_policies',
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('retention_days', sa.Integer(), nullable=True),
    sa.Column('object_lock_mode', sa.String(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('retention_days IS NULL OR retention_days > 0', name='ck_domain_policies_retention_days'),
    sa.CheckConstraint("object_lock_mode IS NULL OR object_lock_mode IN ('GOVERNANCE', 'COMPLIANCE')", name='ck_domain_policies_object_lock_mode'),
    sa.CheckConstraint('object_lock_mode IS NULL OR retention_days IS NOT NULL', name='ck_domain_policies_lock_needs_retention'),
    sa.PrimaryKeyConstraint('domain')
    )


def downgrade() -> None:
    op.drop_table('domain_policies')
