"""The ``skylight`` command: runs the server, and (growing) is a client of the API."""
