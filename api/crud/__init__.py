"""Data access scoped to an owner. Every lookup takes the caller's user id: a row of another user is
indistinguishable from a missing one (the routes answer 404 for both)."""
