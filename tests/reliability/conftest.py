"""Fixtures of the whole-system fault tests (see `system`)."""

from __future__ import annotations

import pytest
from tests.e2e.harness import AMQP_URL, amqp_problem
from tests.support.s3 import moto_server

from .system import REDIS_URL, redis_problem

__all__ = ["moto_server"]


@pytest.fixture(scope="session", autouse=True)
def servers_answer() -> None:
    """The fault tests need the machine's RabbitMQ and Redis (`.ci/run` starts both)."""
    problem = amqp_problem(AMQP_URL)
    if problem is not None:
        pytest.skip(f"RabbitMQ does not answer at {AMQP_URL.split('@')[-1]} ({problem})")
    problem = redis_problem(REDIS_URL)
    if problem is not None:
        pytest.skip(f"Redis does not answer at {REDIS_URL} ({problem})")
