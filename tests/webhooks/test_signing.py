"""Standard Webhooks signing, checked against the specification's published example."""

from __future__ import annotations

import base64
import time

import pytest

from avc_webhooks.signing import new_secret, secret_key, signature, signed_headers

from .conftest import verify_standard_webhook


def test_the_specifications_example() -> None:
    # The example of the Standard Webhooks reference libraries' test suites.
    assert (
        signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            message_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
            timestamp=1614265330,
            body=b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_new_secrets_are_random_32_byte_keys() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret[6:], validate=True)) == 32


def test_headers_verify_and_a_changed_byte_does_not() -> None:
    secret = new_secret()
    now = int(time.time())
    body = b'{"id":"evt_1","type":"video.encoded"}'
    headers = signed_headers(secret, message_id="evt_1", timestamp=now, body=body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    verify_standard_webhook(secret, headers, body)
    with pytest.raises(AssertionError):
        verify_standard_webhook(secret, headers, body + b" ")
    with pytest.raises(AssertionError):
        verify_standard_webhook(new_secret(), headers, body)
    with pytest.raises(ValueError, match="whsec_"):
        secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
