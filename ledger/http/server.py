"""``ledger serve``: opens the ledger once, catches the projections up, and serves the API on
uvicorn until stopped. The process owns the data directory's writer resources meanwhile."""

from __future__ import annotations

import sys
import time

from ledger.app.service import Ledger
from ledger.app.serving import LedgerService
from ledger.app.tokens import TokenStore
from ledger.config import Settings
from ledger.domain.retention.policy import Duration


def _log(line: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} {line}", file=sys.stderr, flush=True)


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8787,
          sweep_every: Duration | None = None, follow_every: float = 1.0) -> None:
    import uvicorn

    from ledger.http.app import create_app

    ledger = Ledger.from_settings(settings)
    service = LedgerService(ledger)
    try:
        service.catch_up()  # a restart catches the projections up by itself
        service.run_background(follow_every=follow_every, sweep_every=sweep_every, on_error=_log)
        app = create_app(service, TokenStore(settings.data_dir), access_log=_log)
        _log(f"serving on http://{host}:{port}")
        uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning",
                    timeout_keep_alive=5, server_header=False)
    finally:
        service.close()
