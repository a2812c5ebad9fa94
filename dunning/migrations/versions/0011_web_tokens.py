"""web_tokens: logins of the merchant's web area (issue 17), kept as SHA-256 of the secret"""

import sqlalchemy as sa
from alembic import op

import dunning.db.types

revision, down_revision = "0011", "0010"

UTC_TS = dunning.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "web_tokens",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=True),
        sa.Column("operator", sa.String(length=100), nullable=True),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("revoked_at", UTC_TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_tokens_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("web_tokens")
