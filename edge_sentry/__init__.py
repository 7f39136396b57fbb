"""Edge Sentry: reads the entry code a visitor shows, verifies it offline, opens the gate, reports to the fleet."""

__version__ = "0.1.0"
