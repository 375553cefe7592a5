"""Daemon settings: precedence flag > env > file > default, errors that name the fix,
secrets redacted, and --help documenting every setting with its default."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pm_polars.cli import build_parser
from pm_polars.daemon.config import SPECS, ConfigError, Settings, duration_s, redacted
from pm_polars.daemon.config_sources import add_arguments, resolve


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    cfg = tmp_path / "pm.toml"
    cfg.write_text(
        'bootstrap_servers = "file:9092"\nmax_events = 111\nmax_wait_ms = 7\n'
        'group_id = "from-file"\n[kafka]\n"security.protocol" = "SSL"\n"linger.ms" = 1\n'
    )
    env = {"PM_MAX_EVENTS": "222", "PM_GROUP_ID": "from-env",
           "PM_KAFKA_PROPERTIES": "linger.ms=2;acks=all"}
    s = resolve(_args("--config", str(cfg), "--group-id", "from-flag", "-X", "acks=1"), env)
    assert s.bootstrap_servers == "file:9092"  # file only
    assert s.max_events == 222  # env beats file
    assert s.group_id == "from-flag"  # flag beats env
    assert s.max_wait_ms == 7.0  # file beats default
    assert s.ticks_topic == "market.ticks"  # default
    assert s.kafka == {"security.protocol": "SSL", "linger.ms": "2", "acks": "1"}


def test_durations_accept_suffixes() -> None:
    assert duration_s("24h") == 86_400.0
    assert duration_s("90s") == 90.0 and duration_s("1.5m") == 90.0 and duration_s("7") == 7.0
    s = resolve(_args("--bootstrap-servers", "b:1", "--dedupe-retention", "2d"), {})
    assert s.dedupe_retention == 172_800.0


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        ((), {}, "--bootstrap-servers / PM_BOOTSTRAP_SERVERS"),
        (("--bootstrap-servers", "b:1", "--max-events", "lots"), {}, "--max-events"),
        (("--bootstrap-servers", "b:1"), {"PM_MAX_WAIT_MS": "-1"}, "PM_MAX_WAIT_MS"),
        (("--bootstrap-servers", "b:1", "--fills-pattern", "orders"), {}, "start it with ^"),
        (("--bootstrap-servers", "b:1", "--redis-url", "http://x"), {}, "--redis-url"),
        (("--bootstrap-servers", "b:1", "--ticks-start", "now"), {}, "earliest, latest"),
        (("--bootstrap-servers", "b:1", "-X", "novalue"), {}, "key=value"),
        (("--bootstrap-servers", "b:1", "--max-reject-ratio", "2"), {}, "fraction"),
        (("--bootstrap-servers", "b:1", "--day-roll-tz", "Asia/Bombay Beach"), {},
         "--day-roll-tz / PM_DAY_ROLL_TZ"),
        (("--bootstrap-servers", "b:1"), {"PM_DAY_ROLL_TIME": "9.15"}, "use HH:MM"),
    ],
)
def test_config_errors_name_the_setting_and_the_fix(
    argv: tuple[str, ...], env: dict[str, str], needle: str
) -> None:
    with pytest.raises(ConfigError) as err:
        resolve(_args(*argv), env)
    assert needle in str(err.value)
    assert "Fix" in str(err.value) or "use one of" in str(err.value)


def test_day_roll_settings_reach_the_engine(tmp_path: Path) -> None:
    cfg = tmp_path / "pm.toml"
    cfg.write_text('bootstrap_servers = "b:1"\nday_roll_tz = "Europe/London"\n')
    s = resolve(_args("--config", str(cfg), "--day-roll-time", "08:00"), {})
    config = s.engine_config()
    assert (config.day_roll_tz, config.day_roll_time, config.roll_minutes) == (
        "Europe/London", "08:00", 480)


def test_unknown_file_key_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "pm.toml"
    cfg.write_text('bootstrap_servers = "b:1"\nmax_event = 5\n')
    with pytest.raises(ConfigError, match="unknown setting.*max_event"):
        resolve(_args("--config", str(cfg)), {})


def test_secrets_are_redacted() -> None:
    s = Settings(
        bootstrap_servers="b:1", redis_url="rediss://user:hunter2@redis:6380/0",
        redis_password="s3cret",
        kafka={"sasl.password": "pw1", "ssl.key.password": "pw2", "sasl.username": "me"},
    )
    text = repr(redacted(s))
    for secret in ("hunter2", "s3cret", "pw1", "pw2"):
        assert secret not in text
    assert "me" in text and "rediss://user:***@redis:6380/0" in text


def test_help_documents_every_setting_with_its_default() -> None:
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr,index]
    text = " ".join(sub.format_help().split())
    for spec in SPECS:
        assert spec.flag in text, spec.flag
        assert spec.env in text, spec.env
    assert "Default 50000" in text and "Default 20.0" in text and "Default 24h" in text
    assert "Default 'pm-polars'" in text.replace("pm- polars", "pm-polars")


def test_redis_cluster_from_flag_env_or_file_and_its_url_rule(tmp_path: Path) -> None:
    base = ("--bootstrap-servers", "k:9092")
    assert resolve(_args(*base), {}).redis_cluster is False
    assert resolve(_args(*base, "--redis-cluster"), {}).redis_cluster is True
    assert resolve(_args(*base), {"PM_REDIS_CLUSTER": "true"}).redis_cluster is True
    assert resolve(_args(*base, "--redis-cluster"), {"PM_REDIS_CLUSTER": "0"}).redis_cluster
    cfg = tmp_path / "pm.toml"
    cfg.write_text("redis_cluster = true\n")
    assert resolve(_args(*base, "--config", str(cfg)), {}).redis_cluster is True
    with pytest.raises(ConfigError, match="PM_REDIS_CLUSTER.*boolean"):
        resolve(_args(*base), {"PM_REDIS_CLUSTER": "maybe"})
    with pytest.raises(ConfigError, match="--redis-cluster.*database 0.*Fix: give --redis-url"):
        resolve(_args(*base, "--redis-cluster", "--redis-url", "redis://h:7000/3"), {})


def test_alerts_with_redis_cluster_are_refused_with_the_fix(tmp_path: Path) -> None:
    cfg = tmp_path / "pm.toml"
    cfg.write_text("redis_cluster = true\n[alerts]\nmax_day_loss = 100\n")
    with pytest.raises(ConfigError, match=r"--redis-cluster.*\[alerts\].*Fix: run alerts"):
        resolve(_args("--bootstrap-servers", "k:9092", "--config", str(cfg)), {})
    cfg.write_text("[alerts]\nmax_day_loss = 100\n")  # one node: accepted
    assert resolve(_args("--bootstrap-servers", "k:9092", "--config", str(cfg)),
                   {}).alerts is not None


def test_quantity_decimals_from_flag_env_or_file_reach_decode_and_engine(
        tmp_path: Path) -> None:
    assert resolve(_args("--bootstrap-servers", "b:1"), {}).engine_config().quantity_decimals == 0
    s = resolve(_args("--bootstrap-servers", "b:1", "--quantity-decimals", "8"), {})
    assert s.quantity_decimals == 8 and s.engine_config().quantity_scale == 10**8
    env = resolve(_args("--bootstrap-servers", "b:1"), {"PM_QUANTITY_DECIMALS": "3"})
    assert env.engine_config().quantity_decimals == 3
    cfg = tmp_path / "pm.toml"
    cfg.write_text('bootstrap_servers = "b:1"\nquantity_decimals = 2\n')
    assert resolve(_args("--config", str(cfg)), {}).quantity_decimals == 2
    for bad in ("9", "-1", "2.5", "lots"):
        with pytest.raises(ConfigError) as err:
            resolve(_args("--bootstrap-servers", "b:1", "--quantity-decimals", bad), {})
        text = str(err.value)
        assert "--quantity-decimals / PM_QUANTITY_DECIMALS" in text and "Fix:" in text
        assert bad in text
    with pytest.raises(ConfigError, match="an integer from 0 .* to 8 decimal places"):
        resolve(_args("--bootstrap-servers", "b:1", "--quantity-decimals", "9"), {})
