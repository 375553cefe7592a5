"""Read settings from flags, environment and a TOML file, applying the precedence.

flag > env (``PM_<NAME>``) > file (``--config FILE``) > default; see ``config``.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pm_polars.daemon.alerts import AlertConfigError, parse_rules
from pm_polars.daemon.config import (
    SPEC_BY_NAME,
    SPECS,
    ConfigError,
    Settings,
    parse_value,
)

KAFKA_ENV = "PM_KAFKA_PROPERTIES"
CONFIG_ENV = "PM_CONFIG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting (no argparse defaults: absence means 'not given')."""
    parser.add_argument(
        "--config", metavar="FILE", default=argparse.SUPPRESS,
        help=f"TOML file of settings (keys as below without '--', dashes as underscores; "
             f"librdkafka properties in a [kafka] table); env {CONFIG_ENV}",
    )
    for spec in SPECS:
        if spec.shown:
            default = spec.shown
        elif spec.name == "bootstrap_servers":
            default = "required"
        else:
            default = repr(spec.default) if spec.default not in (None, "") else "none"
        choices = f" ({'|'.join(spec.choices)})" if spec.choices else ""
        if spec.switch:
            parser.add_argument(spec.flag, dest=spec.name, action="store_const", const="true",
                                default=argparse.SUPPRESS,
                                help=f"{spec.help}. Default off; env {spec.env}")
            continue
        parser.add_argument(
            spec.flag, dest=spec.name, metavar=spec.metavar or None, default=argparse.SUPPRESS,
            help=f"{spec.help}{choices}. Default {default}; env {spec.env}",
        )
    parser.add_argument(
        "-X", dest="kafka_properties", action="append", metavar="KEY=VALUE",
        default=argparse.SUPPRESS,
        help="librdkafka property passed through to every Kafka client (repeatable), e.g. "
             "-X security.protocol=SASL_SSL -X sasl.mechanism=PLAIN; env "
             f"{KAFKA_ENV}='k=v;k=v'",
    )


def _pairs(items: list[str], origin: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"librdkafka property {item.split('=')[0]!r} from {origin} is not KEY=VALUE. "
                "Fix: write it as key=value, e.g. -X security.protocol=SSL"
            )
        out[key.strip()] = value.strip()
    return out


def read_file(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Settings and librdkafka properties from a TOML file (``[alerts]``: under the
    ``alerts`` key, parsed by ``daemon.alerts.parse_rules``)."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist. Fix: check --config") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc})") from exc
    kafka = data.pop("kafka", {})
    if not isinstance(kafka, dict):
        raise ConfigError(f"config file {path}: 'kafka' must be a table ([kafka])")
    alerts = data.pop("alerts", None)
    if alerts is not None:
        if not isinstance(alerts, dict):
            raise ConfigError(f"config file {path}: 'alerts' must be a table ([alerts])")
        try:
            rules = parse_rules(alerts)
        except AlertConfigError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
    unknown = sorted(set(data) - set(SPEC_BY_NAME) - {"alerts"})
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) {unknown}. Fix: use one of "
            f"{sorted(SPEC_BY_NAME)} (underscores, not dashes)"
        )
    if alerts is not None:
        data["alerts"] = rules
    return data, {str(k): str(v) for k, v in kafka.items()}


def resolve(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Merge flag > env > file > default into validated :class:`Settings`."""
    given = vars(args)
    config_path = given.get("config") or environ.get(CONFIG_ENV)
    file_values: dict[str, Any] = {}
    kafka: dict[str, str] = {}
    if config_path:
        file_values, kafka = read_file(Path(config_path))
    kafka.update(_pairs(environ.get(KAFKA_ENV, "").split(";"), KAFKA_ENV))
    kafka.update(_pairs(given.get("kafka_properties") or [], "-X"))

    values: dict[str, Any] = {}
    for spec in SPECS:
        if spec.name in given:
            values[spec.name] = parse_value(spec.name, given[spec.name])
        elif spec.env in environ:
            values[spec.name] = parse_value(spec.name, environ[spec.env])
        elif spec.name in file_values:
            values[spec.name] = parse_value(spec.name, file_values[spec.name])
        else:
            values[spec.name] = spec.default
    if not values["bootstrap_servers"]:
        raise ConfigError(
            "setting --bootstrap-servers / PM_BOOTSTRAP_SERVERS / 'bootstrap_servers' in the "
            "config file: missing. Fix: give the Kafka brokers as HOST:PORT"
        )
    return Settings(**values, kafka=kafka, alerts=file_values.get("alerts"))
