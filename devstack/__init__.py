"""Local infrastructure for ``make run`` and the tests: a Kafka-protocol broker, PostgreSQL, a supervisor.

Building blocks (all usable on their own):

* :mod:`devstack.ports` — ``free_port()``, ``wait_for_tcp()``
* :mod:`devstack.broker` — ``LocalBroker`` (Tansu child process), ``LocalS3``, ``create_topics_and_wait()``
* :mod:`devstack.postgres` — ``LocalPostgres`` (external DSN or embedded server)
* :mod:`devstack.databases` — DB/schema helpers over any DSN
* :mod:`devstack.processes` — ``Supervisor`` / ``ServiceSpec`` for the service processes
* :mod:`devstack.testinfra` — env → testcontainers → local resolution for pytest fixtures
"""

from .broker import BrokerError, LocalBroker, LocalS3, create_topics_and_wait
from .databases import create_database, drop_database, drop_schemas_with_prefix
from .ports import free_port, wait_for_tcp
from .postgres import LocalPostgres, PostgresError
from .processes import ServiceFailed, ServiceSpec, Supervisor, http_ready, python_module

__all__ = [
    "BrokerError",
    "LocalBroker",
    "LocalPostgres",
    "LocalS3",
    "PostgresError",
    "ServiceFailed",
    "ServiceSpec",
    "Supervisor",
    "create_database",
    "create_topics_and_wait",
    "drop_database",
    "drop_schemas_with_prefix",
    "free_port",
    "http_ready",
    "python_module",
    "wait_for_tcp",
]
