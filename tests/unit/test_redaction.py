"""One helper masks secrets in URLs wherever settings or channels are printed."""

from __future__ import annotations

from shopsentry.redaction import redact_data, redact_text, redact_url


def test_userinfo_and_secret_parameters_are_masked() -> None:
    assert (
        redact_url("https://u:p@h.example:8443/hook?token=t&sig=s&team=ops")
        == "https://***@h.example:8443/hook?token=***&sig=***&team=ops"
    )


def test_a_url_without_secrets_is_unchanged() -> None:
    assert redact_url("http://127.0.0.1:9/b?team=ops") == "http://127.0.0.1:9/b?team=ops"


def test_plain_text_is_left_alone_and_data_is_walked() -> None:
    assert redact_text("not a url user:pass@x") == "not a url user:pass@x"
    assert redact_data({"a": ["redis://:pw@r:6379/0"], "n": 3}) == {
        "a": ["redis://***@r:6379/0"],
        "n": 3,
    }
