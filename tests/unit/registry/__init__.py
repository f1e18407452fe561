"""Registry unit tests: domain rules, the SQL store and the blob stores, without gRPC."""
