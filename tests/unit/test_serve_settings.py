"""``pm-polars serve`` settings: flag > env > TOML > default, the bind rule, the token check."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pm_polars.cli import build_parser
from pm_polars.serve.auth import ServeConfigError, ServeSettings, authorized, resolve


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


def test_defaults_are_loopback_without_token() -> None:
    s = resolve(args(), {})
    assert (s.host, s.port, s.auth_token, s.cors_origins) == ("127.0.0.1", 8080, None, [])
    assert s.redis_url == "redis://localhost:6379/0" and s.key_prefix == ""


def test_flag_beats_env_beats_file(tmp_path: Path) -> None:
    toml = tmp_path / "serve.toml"
    toml.write_text('[serve]\nport = 9001\nkey_prefix = "file:"\nauth_token = "from-file"\n'
                    'host = "0.0.0.0"\nheartbeat_s = 2.5\n')
    env = {"PM_SERVE_PORT": "9002", "PM_KEY_PREFIX": "env:"}
    s = resolve(args("--config", str(toml), "--key-prefix", "flag:"), env)
    assert (s.port, s.key_prefix, s.auth_token, s.host, s.heartbeat_s) == (
        9002, "flag:", "from-file", "0.0.0.0", 2.5)
    s = resolve(args("--cors-origin", "http://a", "--cors-origin", "http://b"),
                {"PM_SERVE_CORS_ORIGINS": "http://env", "PM_SERVE_CONFIG": str(toml)})
    assert s.cors_origins == ["http://a", "http://b"] and s.port == 9001


def test_non_loopback_bind_needs_a_token() -> None:
    with pytest.raises(ServeConfigError, match="--auth-token"):
        resolve(args("--host", "0.0.0.0"), {})
    assert resolve(args("--host", "0.0.0.0"), {"PM_SERVE_AUTH_TOKEN": "t"}).auth_token == "t"
    ServeSettings(host="::1").check()  # loopback: fine without


def test_bad_settings_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ServeConfigError, match="PM_SERVE_PORT"):
        resolve(args(), {"PM_SERVE_PORT": "eighty"})
    bad = tmp_path / "bad.toml"
    bad.write_text("[serve]\nprot = 1\n")
    with pytest.raises(ServeConfigError, match="unknown .*prot"):
        resolve(args("--config", str(bad)), {})
    with pytest.raises(ServeConfigError, match="no such file"):
        resolve(args("--config", str(tmp_path / "missing.toml")), {})


def test_bearer_check() -> None:
    assert authorized([(b"authorization", b"Bearer s3cret")], "s3cret")
    assert not authorized([(b"authorization", b"Bearer s3cre")], "s3cret")
    assert not authorized([(b"authorization", b"s3cret")], "s3cret")
    assert not authorized([], "s3cret")


def test_demo_serve_shares_the_http_flags() -> None:
    ns = build_parser().parse_args(["demo", "--serve", "--port", "9100", "--rate", "500"])
    assert (ns.serve, ns.port, ns.rate) == (True, 9100, 500)
    assert resolve(ns, {}).port == 9100


def test_file_values_are_typed(tmp_path: Path) -> None:
    toml = tmp_path / "serve.toml"
    toml.write_text('[serve]\nport = "eighty"\n')
    with pytest.raises(ServeConfigError, match="'port' in"):
        resolve(args("--config", str(toml)), {})


def test_redis_cluster_from_flag_env_or_file(tmp_path: Path) -> None:
    assert resolve(args(), {}).redis_cluster is False
    assert resolve(args("--redis-cluster"), {}).redis_cluster is True
    assert resolve(args(), {"PM_REDIS_CLUSTER": "true"}).redis_cluster is True
    toml = tmp_path / "serve.toml"
    toml.write_text("[serve]\nredis_cluster = true\n")
    assert resolve(args("--config", str(toml)), {}).redis_cluster is True
    with pytest.raises(ServeConfigError, match="PM_REDIS_CLUSTER"):
        resolve(args(), {"PM_REDIS_CLUSTER": "maybe"})
