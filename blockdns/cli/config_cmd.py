"""``blockdns config check``."""

from __future__ import annotations

import typer

from blockdns.cli.common import ConfigOption, load_settings, user_errors
from blockdns.resolve.encrypted import client_context
from blockdns.runtime import build_policy, load_local

app = typer.Typer(help="Validate configuration.", no_args_is_help=True)


@app.command("check")
@user_errors
def check(config: ConfigOption = None) -> None:
    """Validate a config and the catalogue, feeds and hosts files it names: exit 0 valid, 2 invalid."""
    settings = load_settings(config)
    policy = build_policy(settings)
    local = load_local(settings)
    if settings.resolver.tls_ca:
        client_context(settings.tls_ca_path())  # the CA bundle encrypted upstreams are verified against
    where = settings.source or "built-in defaults"
    groups = ", ".join(f"{name} ({len(group.domains)} entries)" for name, group in policy.groups.items())
    print(
        f"{where}: valid; {len(policy.catalog.vendors)} vendors; groups: {groups}; local names: {len(local)};"
        f" forward zones: {len(settings.forward_zones)}"
    )
