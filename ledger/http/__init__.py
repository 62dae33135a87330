"""The HTTP entry point of the ledger (``ledger serve``): like ``cli.py``, it only parses,
calls the application layer and answers."""
