"""The HTTP layer: thin FastAPI routers over services that know nothing of HTTP."""
