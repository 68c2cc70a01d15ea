"""The transports under the fan-out, chosen by URL scheme."""
