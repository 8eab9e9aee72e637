"""koala_chat._http.timeouts: the time limits of one call."""

from __future__ import annotations

import pytest

from koala_chat import UsageError
from koala_chat._http.timeouts import Timeouts


@pytest.mark.parametrize("value", [0, -1, "3", True])
def test_timeouts_must_be_positive_numbers(value: object) -> None:
    with pytest.raises(UsageError, match="total timeout"):
        Timeouts(total=value)  # type: ignore[arg-type]


def test_the_limits_become_one_client_timeout() -> None:
    limits = Timeouts(connect=1.0, idle=2.0, total=3.0).client_timeout(2.5)
    assert (limits.total, limits.sock_connect, limits.sock_read) == (2.5, 1.0, 2.0)
