"""Retention decisions for a large population (issue: 1,000,000 subjects at an arbitrary T in
<= 2 s once projected).

Projecting a 1M-subject demo history (~30M events) is its own benchmark (bench_projection.py),
so this one builds the projection tables directly in DuckDB with synthetic but realistic rows
(the same schema ``ledger project`` writes): one SubjectRegistered and one activity event per
subject, invoices for a fifth of them, deletion notices, open erasure requests, pseudonymised
and erased subjects. Then it times ``population_decisions`` (the SQL the CLI runs) for both
seed policies at a T chosen so that every kind of decision occurs.

    .venv/bin/python bench/bench_decisions.py [--subjects 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.app.decisions import decision_counts, materialise
from ledger.contracts.schemas import default_registry
from ledger.domain.retention.policy import load_policy
from ledger.domain.timeutil import parse_timestamp
from projections.store.duckdb_store import DuckDBStore

SYNTHESIS = """
CREATE TEMP TABLE people AS
SELECT i, CASE WHEN i % 2 = 0 THEN 'coegi' ELSE 'cowrite' END AS controller,
       sha256(i::VARCHAR) AS subject,
       TIMESTAMP '2021-01-01' + to_seconds((hash(i) % (5 * 365 * 86400))::BIGINT) AS first_seen,
       TIMESTAMP '2021-01-01' + to_seconds((hash(i) % (5 * 365 * 86400))::BIGINT)
           + to_seconds((hash(i * 7) % (500 * 86400))::BIGINT) AS last_activity
FROM range($n) t(i);

INSERT INTO events SELECT 3 * i + 1, uuid()::VARCHAR, 'SubjectRegistered', 1, controller, subject,
    first_seen, first_seen, 'web', 'subject', true, '{"relation": "user"}' FROM people;
INSERT INTO events SELECT 3 * i + 2, uuid()::VARCHAR, 'LoggedIn', 1, controller, subject,
    last_activity, last_activity, 'app', 'subject', true, '{}' FROM people;
INSERT INTO events SELECT 3 * i + 3, uuid()::VARCHAR, 'InvoiceUsageRecorded', 1, controller, subject,
    last_activity - INTERVAL 3 DAY, last_activity, 'billing', 'system:billing', true, '{}'
    FROM people WHERE i % 5 = 0;
INSERT INTO events SELECT 4 * $n + i, uuid()::VARCHAR, 'DeletionNoticeSent', 1, controller, subject,
    last_activity + INTERVAL 170 DAY, last_activity + INTERVAL 170 DAY, 'ledger',
    'system:retention-sweep', false, '{}' FROM people WHERE i % 20 = 1;
INSERT INTO activity_clock SELECT controller, subject, first_seen, last_activity,
    last_activity, NULL, CASE WHEN i % 5 = 0 THEN last_activity - INTERVAL 3 DAY END,
    CASE WHEN i % 20 = 1 THEN last_activity + INTERVAL 170 DAY END, last_activity, 3 FROM people;
INSERT INTO pseudonymisation_status SELECT controller, subject,
    CASE WHEN i % 50 = 3 THEN 'pseudonymised' WHEN i % 100 = 7 THEN 'erased' ELSE 'active' END,
    CASE WHEN i % 50 = 3 OR i % 100 = 7 THEN last_activity END,
    CASE WHEN i % 50 = 3 THEN last_activity + INTERVAL 60 DAY END, NULL, NULL, NULL,
    1, NULL, NULL, NULL, NULL FROM people;
INSERT INTO rights_requests SELECT controller, subject, 'rq-' || i, 'erasure', NULL, last_activity,
    last_activity + INTERVAL 1 MONTH, NULL, NULL, uuid()::VARCHAR, NULL FROM people WHERE i % 100 = 11;
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--as-of", default="2025-09-01")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-decisions-") as tmp:
        path = Path(tmp) / "projections.duckdb"
        DuckDBStore(path, default_registry()).close()  # the real schema
        con = duckdb.connect(str(path))
        t = time.perf_counter()
        for statement in SYNTHESIS.replace("$n", str(args.subjects)).split(";"):
            if statement.strip():
                con.execute(statement)
        con.execute("CHECKPOINT")
        con.close()
        print(f"synthesised {args.subjects:,} subjects' projections in {time.perf_counter() - t:.1f} s")

        policies = {"coegi": load_policy("coegi"), "cowrite": load_policy("cowrite")}
        now = parse_timestamp(args.as_of)
        con = duckdb.connect(str(path), read_only=True)
        timings = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            table = materialise(con, policies, now)  # every decision, computed in DuckDB
            timings.append(time.perf_counter() - t)
        counts = decision_counts(con, table)
        total = sum(counts.values())
        t = time.perf_counter()
        rows = con.execute(f"SELECT * FROM {table}").fetchall()
        to_python = time.perf_counter() - t
        con.close()
        best = min(timings)
        print(f"decisions for {total:,} subjects at {args.as_of}: best {best:.2f} s of "
              f"{', '.join(f'{x:.2f}' for x in timings)} s ({total / best:,.0f} subjects/s)")
        print(f"  by action: {counts}")
        print(f"  (fetching all {len(rows):,} rows into Python objects costs another {to_python:.2f} s; "
              "the CLI and the sweep fetch only what they print or apply)")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"subjects": total, "seconds_best": round(best, 3),
                          "seconds_all": [round(x, 3) for x in timings], "target_seconds": 2.0,
                          "target_met": best <= 2.0, "peak_rss_mib": round(rss)}))


if __name__ == "__main__":
    main()
