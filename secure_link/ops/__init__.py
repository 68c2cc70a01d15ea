"""Operating the server: metrics, logs, draining, the embedded database, the audit."""
