"""Registry integration tests: a real registry process over gRPC, on SQLite and on PostgreSQL."""
