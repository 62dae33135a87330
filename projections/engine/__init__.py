"""The projection engine: reads the log, decodes, folds, and writes DuckDB tables."""
