"""Adapters behind the ports: SQLite and Kafka logs, the SQLite key vault, dead letters, files, in-memory doubles."""
