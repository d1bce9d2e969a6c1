"""HTTP: the route table, request and response bodies, and the resolver both entry points use."""
