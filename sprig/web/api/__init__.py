"""The /api/v1/ routes, one module per resource; each declares its routes in a module-level ROUTES."""
