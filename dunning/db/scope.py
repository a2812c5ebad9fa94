"""Which rows one run touches: a shard of merchants, and the chunks big statements take."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select

from dunning.models.sharding import check_shard

T = TypeVar("T")

# Bound parameters per statement: SQLite allows 32,766; PostgreSQL 65,535.
CHUNK = 5000


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """`items` in slices of at most `size` (an IN list or a VALUES list per statement)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class Scope:
    """All merchants (`shard` None) or those with `shard_key % shards == shard`."""

    shard: int | None = None
    shards: int = 1

    def __post_init__(self) -> None:
        check_shard(self.shard, self.shards)

    @property
    def everything(self) -> bool:
        return self.shard is None or self.shards <= 1

    @property
    def name(self) -> str:
        return "all" if self.shard is None else f"{self.shard}/{self.shards}"

    def where(self, merchant_id_column: Any):
        """An ORM condition on a merchant id column, or None for all merchants."""
        if self.everything:
            return None
        from dunning.models.schema import Merchant

        return merchant_id_column.in_(
            select(Merchant.merchant_id).where(Merchant.shard_key % self.shards == self.shard)
        )

    def apply(self, query: Any, merchant_id_column: Any) -> Any:
        """`query` filtered to the scope's merchants (unchanged for all merchants)."""
        condition = self.where(merchant_id_column)
        return query if condition is None else query.where(condition)

    def sql(self, merchant_id_expr: str) -> str:
        """The same condition for text SQL, e.g. `AND {scope.sql('c.merchant_id')}`;
        `TRUE` for all merchants. The numbers are integers checked above: no injection."""
        if self.everything:
            return "1 = 1"
        return (
            f"{merchant_id_expr} IN (SELECT merchant_id FROM merchants "
            f"WHERE shard_key % {int(self.shards)} = {int(self.shard)})"
        )
