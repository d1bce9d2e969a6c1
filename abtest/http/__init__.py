"""HTTP: the route table, the request and response bodies, the one request path, its adapters."""
