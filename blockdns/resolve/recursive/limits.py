"""Bounds on the work one resolution may cause, so that a loop or a hostile zone ends in an error, never a
hang. The values follow Unbound's defaults where it has one (``max-query-restarts``, ``MAX_REFERRAL_COUNT``,
``target-fetch-policy``) and are all far above what real names need."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    max_queries: int = 64  # upstream queries per client question, sub-resolutions included
    max_referrals: int = 30  # referrals followed in one resolution (Unbound: MAX_REFERRAL_COUNT 130)
    max_glueless_depth: int = 4  # NS-address lookups nested inside NS-address lookups
    max_cname_chain: int = 12  # CNAME/DNAME redirections (Unbound: MAX_RESTART_COUNT 11)
    max_steps: int = 512  # state-machine steps: a backstop that no real resolution comes near


@dataclass(slots=True)
class Budget:
    """Shared by a resolution and every sub-resolution it starts: one deadline, one query count."""

    deadline: float
    queries: int = 0
