"""Usage metering: requests, rows and compute seconds per principal, model and hour.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage",
        sa.Column("principal", sa.String(256), primary_key=True),
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("hour", sa.BigInteger, primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("compute_seconds", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("usage")
