"""Several broker URLs in MISSIONS_AMQP_URL: parsing them and keeping their passwords out of logs."""

from __future__ import annotations

import pytest

from mission_service.settings import ServiceSettings
from missions.brokers import broker_urls, redact_url


def test_a_url_list_is_split_at_commas_with_spaces_ignored() -> None:
    assert broker_urls("amqp://a:1@n1:5672/") == ["amqp://a:1@n1:5672/"]
    assert broker_urls(" amqp://a:1@n1/ , amqp://a:1@n2/,") == ["amqp://a:1@n1/", "amqp://a:1@n2/"]


@pytest.mark.parametrize("empty", ["", " , "])
def test_no_url_is_an_error(empty: str) -> None:
    with pytest.raises(ValueError, match="no broker URL"):
        broker_urls(empty)


def test_every_password_of_a_list_is_redacted() -> None:
    urls = "amqp://app:s3cret@n1:5672/,amqp://app:0ther@n2:5672/vhost,amqp://n3/"
    assert redact_url(urls) == "amqp://app:***@n1:5672/,amqp://app:***@n2:5672/vhost,amqp://n3/"
    shown = repr(ServiceSettings(amqp_url=urls))
    assert "s3cret" not in shown and "0ther" not in shown
