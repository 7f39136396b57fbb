"""Edge Sentry: reads the entry code a visitor shows, verifies it offline, opens the gate, reports.

Everything reaches the fleet over MQTT; see docs/architecture.md and docs/protocol.md.
"""

__version__ = "0.1.0"
