"""Edge Sentry: reads the entry code a visitor shows, verifies it offline, opens the gate, reports.

Everything reaches the fleet over MQTT; see DESIGN.md for the architecture and the contracts.
"""

__version__ = "0.1.0"
