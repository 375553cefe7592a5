"""Daemon ``--account-currency``: validated, reaches the engine, recorded in the Redis
``meta`` (only when not the default) and a stored state refused under another currency;
an instruments file booking another currency or inverse contracts accepted (the publish path
converts), an unreadable one refused at start naming the setting."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from support.resp import parse_commands

from pm_polars.daemon.checkpoint.codec import (
    AccountCurrencyMismatch,
    check_account_currency,
    encode_state,
)
from pm_polars.daemon.config import ConfigError, Settings
from pm_polars.engine.engine import PortfolioEngine


def _instruments(tmp_path: Path, **extra: list[object]) -> Path:
    path = tmp_path / "instruments.csv"
    pl.DataFrame({"instrument_token": [1, 2], "multiplier": [1.0, 50.0], **extra}).write_csv(path)
    return path


def test_account_currency_reaches_the_engine() -> None:
    s = Settings(bootstrap_servers="k:9092", account_currency="USD")
    assert s.engine_config().account_currency == "USD"
    assert Settings(bootstrap_servers="k:9092").engine_config().account_currency == "INR"


@pytest.mark.parametrize("bad", ["usd", "DOLLAR", ""])
def test_bad_account_currency_names_the_setting(bad: str) -> None:
    with pytest.raises(ConfigError, match="--account-currency.*ISO 4217"):
        Settings(bootstrap_servers="k:9092", account_currency=bad)


def test_currency_mix_accepted_on_one_node_and_on_a_cluster(tmp_path: Path) -> None:
    path = _instruments(tmp_path, quote_currency=["INR", "USD"])
    assert Settings(bootstrap_servers="k:9092", instruments=path).instruments == path
    inverse = _instruments(tmp_path, inverse=[False, True], base_currency=[None, "BTC"])
    cluster = Settings(bootstrap_servers="k:9092", redis_cluster=True,
                       redis_url="redis://n1:7000", instruments=inverse)
    assert cluster.instruments == inverse


def test_unreadable_instruments_refused_at_start(tmp_path: Path) -> None:
    bad = _instruments(tmp_path, quote_currency=["INR", "usd"])
    with pytest.raises(ConfigError, match=r"--instruments.*cannot be used"):
        Settings(bootstrap_servers="k:9092", instruments=bad)


def test_one_currency_book_is_accepted(tmp_path: Path) -> None:
    path = _instruments(tmp_path, quote_currency=["USD", None])
    s = Settings(bootstrap_servers="k:9092", instruments=path, account_currency="USD")
    assert s.account_currency == "USD"


def _meta(account: str) -> dict[str, str]:
    e = PortfolioEngine(account_currency=account)
    e.apply([{"event_type": "order_fill", "source": "s", "fill_id": "1", "ts": 1_700_000_000_000,
              "quantity": 1, "fill_price": 10.0,
              "original_signal": {"strategy_id": "A", "instrument_token": 1,
                                  "signal_type": "BUY"}}])
    snap = e.state
    frame = pl.DataFrame({"topic": ["t"], "partition": [0], "portfolio_id": ["s_A"],
                          "instrument_token": [1], "source": ["s"], "fill_id": ["1"],
                          "ts": [1_700_000_000_000_000_000]},
                         schema_overrides={"partition": pl.Int32})
    out = encode_state(snap, None, frame.head(0), {("t", 0): 5}, 1, lambda tp, t: f"{t}",
                       account_currency=account)
    hset = [args for c in out.commands for args in parse_commands(c) if args[1] == b"meta"]
    assert len(hset) == 1 and hset[0][0] == b"HSET"
    words = [a.decode() for a in hset[0][2:]]
    return dict(zip(words[::2], words[1::2], strict=True))


def test_meta_records_a_non_default_currency_only() -> None:
    assert "account_currency" not in _meta("INR")
    assert _meta("USD")["account_currency"] == "USD"


def test_stored_state_refused_under_another_currency() -> None:
    check_account_currency({"next_offset": "5"}, "INR", "partition t:0")
    check_account_currency({"account_currency": "USD"}, "USD", "partition t:0")
    with pytest.raises(AccountCurrencyMismatch, match="booked in account currency INR but "
                       "--account-currency is USD; restart with --account-currency INR"):
        check_account_currency({"next_offset": "5"}, "USD", "partition t:0")


def test_pm_polars_run_exits_2_naming_the_setting(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``pm-polars run`` stops before connecting anywhere: exit 2, the setting named."""
    from pm_polars.cli import main

    path = _instruments(tmp_path, quote_currency=["INR", "usd"])
    assert main(["run", "--bootstrap-servers", "k:9092", "--instruments", str(path)]) == 2
    assert "setting --instruments" in capsys.readouterr().err
    assert main(["run", "--bootstrap-servers", "k:9092", "--account-currency", "inr"]) == 2
    assert "setting --account-currency" in capsys.readouterr().err
