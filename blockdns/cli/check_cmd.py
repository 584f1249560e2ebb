"""``blockdns check NAME``: explain the decision for one name."""

from __future__ import annotations

import ipaddress
import json
from typing import Annotated

import typer

from blockdns.cli.common import ConfigOption, JsonOption, load_settings, user_errors
from blockdns.dnsname import text_key
from blockdns.errors import InvalidName, UserError
from blockdns.names import query_name
from blockdns.runtime import build_policy


@user_errors
def check(
    name: Annotated[str, typer.Argument(help="The domain name to explain.")],
    client: Annotated[
        str | None, typer.Option("--client", help="Client IP address (picks its group).")
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Explain the decision for NAME: allowed or blocked, the matching rule, vendor, category, group."""
    try:
        key = text_key(query_name(name))
    except InvalidName as err:
        raise UserError(str(err)) from None
    if client is not None:
        try:
            ipaddress.ip_address(client)
        except ValueError:
            raise UserError(f"--client: not an IP address: {client!r}") from None
    settings = load_settings(config)
    policy = build_policy(settings)
    decision = policy.group_for(client).decide(key)
    if json_output:
        print(json.dumps(decision.to_json(), indent=2))
        return
    data = decision.to_json()
    verdict = "BLOCKED" if decision.blocked else "allowed"
    print(f"{key}: {verdict} (group {decision.group})")
    print(f"  {decision.reason}")
    if decision.entry:
        print(f"  rule: {decision.entry}")
    for key in ("vendor_name", "category", "jurisdiction", "feed"):
        if data[key]:
            print(f"  {key.replace('_name', '')}: {data[key]}")
