"""The demo: a synthetic history generator and the demo runner."""
