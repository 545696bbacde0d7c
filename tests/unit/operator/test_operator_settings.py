"""OperatorSettings: flags and KEEPFIX_* variables with the same names."""

from __future__ import annotations

import argparse

import pydantic
import pytest

from keepfix.api import settings


def parse(argv: list[str], env: dict[str, str] | None = None) -> settings.OperatorSettings:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    return settings.from_args(parser.parse_args(argv), env or {})


def test_defaults_follow_the_design() -> None:
    """No flags, no variables: all namespaces, standalone, port 8080, the DESIGN.md timings."""
    s = parse([])
    assert s.all_namespaces
    assert s.standalone
    assert s.metrics_port == 8080
    assert s.webhook_port == 9443
    assert s.webhook_failure_policy == "Ignore"
    assert s.webhook_timeout_seconds == 3
    assert (s.fight_limit, s.fight_span) == (5, 60.0)
    assert (s.backoff_base, s.backoff_factor, s.backoff_cap) == (2.0, 3.0, 300.0)


def test_namespace_flag_repeats_and_env_is_comma_separated() -> None:
    """--namespace a --namespace b equals KEEPFIX_NAMESPACE=a,b."""
    assert parse(["--namespace", "a", "--namespace", "b"]).namespaces == ("a", "b")
    assert parse([], {"KEEPFIX_NAMESPACE": "a, b"}).namespaces == ("a", "b")
    assert not parse(["--namespace", "a"]).all_namespaces


def test_a_flag_wins_over_the_environment() -> None:
    """--metrics-port beats KEEPFIX_METRICS_PORT; the variable beats the default."""
    env = {"KEEPFIX_METRICS_PORT": "9000", "KEEPFIX_LOG_FORMAT": "json"}
    s = parse(["--metrics-port", "9100"], env)
    assert s.metrics_port == 9100
    assert s.log_format == "json"


def test_all_namespaces_clears_the_environment_namespaces() -> None:
    """--all-namespaces overrides KEEPFIX_NAMESPACE."""
    assert parse(["--all-namespaces"], {"KEEPFIX_NAMESPACE": "a"}).all_namespaces


def test_peering_name_means_not_standalone() -> None:
    """--peering-name joins a peering; --standalone and it exclude each other."""
    s = parse(["--peering-name", "keepfix"])
    assert (s.standalone, s.peering_name) == (False, "keepfix")
    with pytest.raises(SystemExit):
        parse(["--standalone", "--peering-name", "x"])


def test_round_trip_through_the_environment() -> None:
    """to_env then from_env gives the same settings (what `keepfix run` relies on)."""
    s = parse(
        ["--namespace", "shop", "--fight-limit", "3", "--backoff-base", "0.2", "--webhook", "off"]
    )
    assert settings.OperatorSettings.from_env(s.to_env()) == s


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"KEEPFIX_METRICS_PORT": "http"}, "metrics_port"),
        ({"KEEPFIX_LOG_FORMAT": "xml"}, "log_format"),
        ({"KEEPFIX_WEBHOOK": "maybe"}, "webhook"),
        ({"KEEPFIX_WEBHOOK_FAILURE_POLICY": "Sometimes"}, "webhook_failure_policy"),
        ({"KEEPFIX_FIGHT_LIMIT": "1"}, "fight_limit"),
    ],
)
def test_a_bad_value_names_its_setting(env: dict[str, str], field: str) -> None:
    """Validation errors point at the setting that is wrong."""
    with pytest.raises(pydantic.ValidationError) as caught:
        settings.OperatorSettings.from_env(env)
    assert caught.value.errors()[0]["loc"] == (field,)


def test_env_names_match_flag_names() -> None:
    """Every setting's variable is its flag, upper-cased, with KEEPFIX_ in front."""
    for field in settings.OperatorSettings.model_fields:
        flag = settings.flag_name(field)
        assert settings.env_name(field) == "KEEPFIX_" + flag[2:].upper().replace("-", "_")


def test_keepfix_run_rejects_a_bad_flag_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    """`keepfix run --metrics-port=x` exits 2 naming the flag, without exec'ing the operator."""
    from keepfix.cli import main

    with pytest.raises(SystemExit) as caught:
        main.main(["run", "--metrics-port", "x"])
    assert caught.value.code == 2
    assert "--metrics-port" in capsys.readouterr().err


def test_the_operator_process_names_a_bad_variable() -> None:
    """`python -m keepfix.handlers` with a bad KEEPFIX_* variable exits 2 naming it."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "KEEPFIX_METRICS_PORT": "eighty"}
    proc = subprocess.run(
        [sys.executable, "-m", "keepfix.handlers"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "KEEPFIX_METRICS_PORT" in proc.stderr


def test_json_logs_are_one_object_per_line() -> None:
    """--log-format json: time, level, logger, message (and the error) as JSON."""
    import json
    import logging

    from keepfix.handlers import operator

    record = logging.LogRecord(
        "keepfix.x", logging.WARNING, __file__, 1, "Drift %s", ("seen",), None
    )
    entry = json.loads(operator.JsonFormatter().format(record))
    assert entry["level"] == "warning"
    assert entry["logger"] == "keepfix.x"
    assert entry["message"] == "Drift seen"
