"""The HTTP edge: the FastAPI app over :class:`workers.contract.ServiceAPI`, its routes, schemas,
auth, middleware, error table, body parsers (JSON, NDJSON, Arrow), the console and the Serve ingress."""
