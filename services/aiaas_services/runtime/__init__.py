"""The runtime every aiaas service starts with: settings, server bootstrap, errors, logging, streams."""
