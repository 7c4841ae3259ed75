"""Skylight: a rack control plane that never lets an instance fail in the dark."""
