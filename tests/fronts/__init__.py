"""Conformance tests of the framework fronts against the real libraries."""
