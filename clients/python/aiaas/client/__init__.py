"""Typed Python clients over the generated stubs."""
