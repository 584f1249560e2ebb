#!/usr/bin/env bash
# Installs the Debian programs that tests and the benchmark drive: the servers that load our exports
# (unbound-checkconf, named-checkzone, dnsmasq --test; Unbound also serves DNS over TLS and HTTPS to the
# encrypted-upstream tests, its Debian build has nghttp2), the benchmark pair (dnsmasq, dnsperf), systemd's
# unit verifier, the DoT/DoH clients (kdig, dig, curl), the Redis that the cluster tests' replicas share,
# PostgreSQL for the shared query log, and a headless browser for the dashboard test. Root only; otherwise the
# tests that need a missing program skip and say why.
set -euo pipefail

need=()
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v unbound-checkconf >/dev/null || need+=(unbound)
command -v named-checkzone >/dev/null || need+=(bind9-utils)  # also dnssec-keygen/-signzone (DNSSEC tests)
command -v nsd >/dev/null || need+=(nsd)  # serves the signed hierarchy of the DNSSEC tests
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v kdig >/dev/null || need+=(knot-dnsutils)  # DoT/DoH client for the encrypted-DNS tests
command -v dig >/dev/null || need+=(bind9-dnsutils)  # dig +tls / +https (9.18)
command -v curl >/dev/null || need+=(curl)  # curl --doh-url
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v redis-server >/dev/null || need+=(redis-server)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "system-deps: not root; missing ${need[*]} (tests that need them will skip)" >&2
  exit 0
fi
# Installing a server package must not start it (it would take port 53 from the tests' fake servers).
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "system-deps: installed ${need[*]}"
