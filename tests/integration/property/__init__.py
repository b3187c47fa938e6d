"""Property-based tests that need PostgreSQL (the DB-free ones are in tests/property)."""
