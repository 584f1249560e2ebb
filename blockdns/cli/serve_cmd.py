"""``blockdns serve``."""

from __future__ import annotations

from blockdns.cli.common import ConfigOption, load_settings, user_errors


@user_errors
def serve(config: ConfigOption = None) -> None:
    """Run the resolver until SIGINT/SIGTERM; SIGHUP reloads config and lists."""
    settings = load_settings(config)
    if settings.server.worker_count() > 1:
        from blockdns.server import workers

        workers.run(settings)
    else:
        from blockdns.server import app

        app.run(settings)
