"""The application layer: the only layer that uses both the write side and the read side. The CLI, the Python API and the HTTP service call these services."""
