"""The running server: transports (UDP, TCP), the query engine, and the application lifecycle."""
