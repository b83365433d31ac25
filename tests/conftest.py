"""Fixtures shared by test modules: the real brokers of tests/brokers.py."""

from tests.brokers import kafka_server, redis_server

__all__ = ["kafka_server", "redis_server"]
