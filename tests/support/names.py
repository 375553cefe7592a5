"""Topic, group and pattern names unique to one test or chaos scenario."""

from __future__ import annotations

from dataclasses import dataclass

from .kafka_broker import create_topics

STARTING_CASH = 10_000_000.0  # the daemons' --starting-cash in tests


@dataclass(frozen=True)
class Names:
    """Topics, group and pattern unique to one scenario."""

    uid: str
    fill_partitions: int = 3
    tick_partitions: int = 2
    cost_basis: str = "average"  # the scenario's --cost-basis (daemons and reference)
    quantity_decimals: int = 0  # the scenario's --quantity-decimals (daemons and reference)

    @property
    def pattern(self) -> str:
        return rf"^{self.uid}\.orders\.filled\..*"

    @property
    def ticks(self) -> str:
        return f"{self.uid}.market.ticks"

    @property
    def dlq(self) -> str:
        return f"{self.uid}.deadletter"

    @property
    def group(self) -> str:
        return f"{self.uid}-group"

    def fills(self, source: str) -> str:
        return f"{self.uid}.orders.filled.{source}"

    def topic(self, demo_topic: str) -> str:
        """The scenario's name for a demo feed topic (``orders.filled.x`` or ``market.ticks``)."""
        return f"{self.uid}.{demo_topic}"

    def create(self, bootstrap: str) -> None:
        """Creates the paper/live fill topics and the ticks topic."""
        create_topics(bootstrap, {
            self.fills("paper"): self.fill_partitions, self.fills("live"): self.fill_partitions,
            self.ticks: self.tick_partitions,
        })

    def daemon_args(self, *extra: str) -> list[str]:
        decimals = (["--quantity-decimals", str(self.quantity_decimals)]
                    if self.quantity_decimals else [])
        return ["--group-id", self.group, "--fills-pattern", self.pattern,
                "--ticks-topic", self.ticks, "--dlq-topic", self.dlq,
                "--starting-cash", str(STARTING_CASH), "--cost-basis", self.cost_basis,
                *decimals, *extra]
