"""Generators: they map an encoded initial condition to a whole space-time field."""
