"""Round-trip time estimates and retransmission timeouts for one server: RFC 6298's estimator (the one TCP
uses), as Unbound's ``util/rtt.c`` applies it to DNS servers. Shared by the forwarder and the recursive
resolver's server table. Time is passed in; no clock is read here."""

from __future__ import annotations

from dataclasses import dataclass

MIN_RTO = 0.2  # loopback and LAN servers answer in a millisecond, but a busy host stalls for longer


def smoothed(srtt: float | None, rttvar: float, sample: float) -> tuple[float, float]:
    """The new (smoothed RTT, RTT variation) after one round-trip sample (RFC 6298 §2)."""
    if srtt is None:
        return sample, sample / 2
    return 0.875 * srtt + 0.125 * sample, 0.75 * rttvar + 0.25 * abs(srtt - sample)


def retransmission_timeout(srtt: float, rttvar: float, ceiling: float) -> float:
    return min(max(srtt + 4 * rttvar, MIN_RTO), ceiling)


@dataclass(slots=True)
class RttEstimate:
    """How long to wait for one server's reply before asking again: ``srtt + 4 * rttvar`` from its replies,
    doubled by a wait that went unanswered until a reply brings it back (RFC 6298 §5)."""

    rto: float
    srtt: float | None = None
    rttvar: float = 0.0

    def observe(self, sample: float, ceiling: float) -> None:
        self.srtt, self.rttvar = smoothed(self.srtt, self.rttvar, sample)
        self.rto = retransmission_timeout(self.srtt, self.rttvar, ceiling)

    def back_off(self, waited: float, ceiling: float) -> None:
        """No reply within ``waited`` (the RTO a query was given): double that, not the current RTO, and
        not below a reply's newer estimate, so that many queries timing out together back off once
        (Unbound's ``rtt_lost``)."""
        if self.rto < waited:
            return  # a reply has brought the estimate down meanwhile
        self.rto = max(self.rto, min(waited * 2, ceiling))
