"""The read-side store: DuckDB files (``duckdb_store``), the read model's port and adapters
(``read_model``), the one as-of opener (``opener``), the read queries (``retention_queries``,
``subject_queries``) and the user-SQL sandbox (``sandbox``)."""
