"""The web layer: the JSON envelope, route declarations and their plugin, OpenAPI, auth, pages."""
