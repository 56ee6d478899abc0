"""Shared machinery of the framework fronts (``convgrad.tf``, ``convgrad.torch``, ...)."""
