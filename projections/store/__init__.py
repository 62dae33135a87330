"""The read-side store: DuckDB files, the user-SQL sandbox, the read-only and as-of opener."""
