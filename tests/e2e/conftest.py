"""Fixtures of the end-to-end tests: real processes over real RabbitMQ (see `harness`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import AMQP_URL, Stack, amqp_problem, running_stack


@pytest.fixture(scope="session")
def amqp_url() -> str:
    problem = amqp_problem(AMQP_URL)
    if problem is not None:
        pytest.skip(f"RabbitMQ does not answer at {AMQP_URL.split('@')[-1]} ({problem})")
    return AMQP_URL


@pytest.fixture(scope="module")
def services(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Every service and the gateway as separate processes, shared by a test module."""
    with running_stack(tmp_path_factory.mktemp("e2e"), bus_url=amqp_url) as stack:
        stack.start_services()
        yield stack


@pytest.fixture(scope="module")
def api_key(services: Stack) -> str:
    """An enterprise account's API key on the `services` stack."""
    return services.api_key()


@pytest.fixture
def fresh_services(amqp_url: str, tmp_path: Path) -> Iterator[Stack]:
    """Like `services`, for one test that may stop some of them."""
    with running_stack(tmp_path, bus_url=amqp_url) as stack:
        stack.start_services()
        yield stack
