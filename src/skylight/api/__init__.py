"""The HTTP API: thin handlers over the domain, wire-compatible with the Oxide API subset."""
