"""The error tree: relations, one-line messages, pickling."""

from __future__ import annotations

import pickle

import pytest

from koala_chat import errors


def test_every_error_descends_from_koala_error() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.KoalaError)


def test_builtin_relations() -> None:
    assert issubclass(errors.KoalaTimeoutError, TimeoutError)
    assert issubclass(errors.KoalaTimeoutError, errors.TransportError)
    assert issubclass(errors.UsageError, ValueError)
    assert issubclass(errors.ModelNotFoundError, errors.UsageError)
    assert issubclass(errors.ProxyError, errors.ConnectError)
    assert issubclass(errors.RateLimitError, errors.StatusError)
    assert issubclass(errors.CloudflareChallengeError, errors.StatusError)
    assert issubclass(errors.IncompleteEventError, errors.ProtocolError)
    # The key's errors are status errors, and running out of credits is not a
    # rate limit: waiting does not help.
    assert issubclass(errors.AuthenticationError, errors.StatusError)
    assert issubclass(errors.CreditsExhaustedError, errors.StatusError)
    assert not issubclass(errors.CreditsExhaustedError, errors.RateLimitError)
    assert issubclass(errors.UnexpectedReplyError, errors.NotEventStreamError)


EXAMPLES = [
    errors.KoalaTimeoutError("slow", limit="idle", seconds=2.5),
    errors.StatusError(
        "bad", status=404, url="http://x/", body="nope", request_id="r1"
    ),
    errors.RateLimitError("wait", status=402, retry_after=3.0),
    errors.CloudflareChallengeError("cf", status=403, request_id="ray"),
    errors.NotEventStreamError("html", content_type="text/html", body="<p>"),
    errors.InvalidJSONError("json", data="{x"),
    errors.IncompleteEventError("cut", data='"ab'),
    errors.EventTooLargeError("big", limit=10),
    errors.ModelNotFoundError("no", provider="P", model="m", models=("a", "b")),
    errors.ProxyError("proxy", attempts=3),
    errors.AuthenticationError("key", status=401, url="http://x/", body="no"),
    errors.CreditsExhaustedError("credits", status=402, request_id="r2"),
    errors.PlanError("plan", status=403, url="http://x/", body="Professional"),
    errors.UnexpectedReplyError("json", content_type="application/json", body="{}"),
]


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda e: type(e).__name__)
def test_errors_survive_pickling(error: errors.KoalaError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert vars(copy) == vars(error)
    assert str(copy) == str(error)


def test_message_is_one_line_with_attempts() -> None:
    error = errors.ServerError("upstream answered 500", status=500, attempts=3)
    assert str(error) == "upstream answered 500 (after 3 attempts)"
    assert error.message == "upstream answered 500"
    assert "\n" not in str(error)
