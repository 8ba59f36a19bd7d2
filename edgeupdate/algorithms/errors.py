"""Errors of the server-side algorithms."""


class StudentError(ValueError):
    """A student cannot be derived (bad arguments, unsupported model, or nothing fits the budget)."""
