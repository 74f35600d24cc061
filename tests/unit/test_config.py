from __future__ import annotations

import pytest

from airflow_resilience.airflow.provider import get_provider_info
from airflow_resilience.config import Settings, load_settings
from airflow_resilience.errors import ConfigurationError
from airflow_resilience.options import OPTIONS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, Settings()),
        ({"checkpoint_flush_interval": "1.5"}, Settings(checkpoint_flush_interval=1.5)),
        ({"checkpoint_keep_on_clear": "true"}, Settings(checkpoint_keep_on_clear=True)),
        ({"checkpoint_keep_on_clear": " False "}, Settings(checkpoint_keep_on_clear=False)),
        ({"cloud_providers": "aws, GCP"}, Settings(cloud_providers=("aws", "gcp"))),
        ({"infra_retries": "0", "enabled": "false"}, Settings(infra_retries=0, enabled=False)),
    ],
)
def test_load_settings(raw: dict[str, str], expected: Settings) -> None:
    assert load_settings(raw.get) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"checkpoint_flush_interval": "soon"}, r"\[resilience\] checkpoint_flush_interval = 'soon': expected a number"),
        ({"checkpoint_flush_interval": "-1"}, r"checkpoint_flush_interval = '-1': must be >= 0"),
        ({"checkpoint_keep_on_clear": "maybe"}, r"checkpoint_keep_on_clear = 'maybe': expected True or False"),
        ({"cloud_providers": "aws,ibm"}, r"cloud_providers = 'aws,ibm': unknown provider\(s\) \['ibm'\]"),
        ({"infra_retries": "three"}, r"infra_retries = 'three': expected a whole number"),
        ({"infra_retries": "-2"}, r"infra_retries = '-2': must be >= 0"),
        ({"breaker_threshold": "0"}, r"breaker_threshold = 0: must be >= 1"),
    ],
)
def test_bad_settings_name_the_option(raw: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(raw.get)


def test_defaults_parse_and_match_dataclass() -> None:
    assert load_settings(lambda _o: None) == Settings()


def test_provider_info_declares_every_option_with_default() -> None:
    info = get_provider_info()
    options = info["config"]["resilience"]["options"]
    assert set(options) == set(OPTIONS)
    for name, (_kind, default, doc) in OPTIONS.items():
        assert options[name]["default"] == default
        assert options[name]["description"] == doc
