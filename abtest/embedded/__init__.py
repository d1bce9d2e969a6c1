"""The embedded product: TOML config, wiring onto SQLite and local files, the ASGI server."""
