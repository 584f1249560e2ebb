"""The ``blockdns`` command line: typer sub-apps, the only place that calls ``asyncio.run``."""
