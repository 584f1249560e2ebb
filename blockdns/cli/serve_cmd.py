"""``blockdns serve``."""

from __future__ import annotations

from blockdns.cli.common import ConfigOption, load_settings, user_errors


@user_errors
def serve(config: ConfigOption = None) -> None:
    """Run the resolver until SIGINT/SIGTERM; SIGHUP reloads config and lists."""
    from blockdns.server.app import run

    settings = load_settings(config)
    run(settings)
