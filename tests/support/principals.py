"""Who the tests are when they send commands straight to Kafka (as a back end would): a named system principal
with the permissions it needs. Commands without a permissions list are refused (fail closed)."""

from shared.events import Permission, SystemPrincipal

TEST_BACKEND = SystemPrincipal("system:tests", tuple(Permission))
"""Every permission: the tests that use it exercise something other than permissions."""
