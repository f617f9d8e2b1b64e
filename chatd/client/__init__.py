"""The chatd terminal client: keys, connection and user interface."""
