"""The export engine: from Parquet rows to Constant Contact import requests (see docs/architecture.md)."""
