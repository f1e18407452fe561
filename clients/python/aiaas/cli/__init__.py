"""The `aiaas` command line."""
