"""aiaas client distribution: generated stubs (aiaas.<service>.v1), typed clients and the CLI."""
