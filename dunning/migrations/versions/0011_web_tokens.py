"""web_tokens: logins of the merchant's web area (issue 17), kept as SHA-256 of the secret;
on PostgreSQL a pg_trgm index serving the board's `search_text LIKE '%term%'`"""

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
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.create_index(
            "ix_case_report_search_text_trgm",
            "case_report",
            ["search_text"],
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_case_report_search_text_trgm", table_name="case_report")
    op.drop_table("web_tokens")
