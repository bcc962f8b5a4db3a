#!/usr/bin/env bash
# Installs the Debian packages Shoal's tests use, only those missing (needs root for apt-get).
#   ip (iproute2), nft (nftables), dig (dnsutils), dnsmasq (dnsmasq-base: the binary, no service),
#   conntrack, curl, openssl, cpio (the kernel lab's initramfs), zsh (the completion test), etcd +
#   etcdctl (etcd-server, etcd-client: the HA store's tests start their own members), prometheus
#   (promtool and a real Prometheus for the metrics tests; its service is not started), chromium
#   (the /ui test, headless); with --bench also dnsperf, wrk, haproxy.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v dig >/dev/null || need+=(dnsutils)
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
command -v conntrack >/dev/null || need+=(conntrack)
command -v curl >/dev/null || need+=(curl)
# openssl s_client reads the managers' certificates in the TLS tests (test/integration/tls-ha.test.ts).
command -v openssl >/dev/null || need+=(openssl)
# `shoal completion zsh` is tested in a real zsh (test/unit/cli-help.test.ts).
command -v zsh >/dev/null || need+=(zsh)
# etcd for the HA control plane's tests (the tests start members themselves; never a service).
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
# The kernel lab (../shared/kernel-lab/run-in-kernel.sh, IPVS tests) installs qemu itself but needs cpio.
command -v cpio >/dev/null || need+=(cpio)
# The metrics tests: `promtool check metrics` and a Prometheus the test starts itself.
command -v promtool >/dev/null && command -v prometheus >/dev/null || need+=(prometheus)
# The /ui test: headless Chromium driven by playwright-core (npm devDependency).
[ -x /usr/bin/chromium ] || need+=(chromium)
# Benchmarks only (npm run bench): dnsperf, the DNS load generator.
if [ "${1:-}" = --bench ]; then
  command -v dnsperf >/dev/null || need+=(dnsperf)
  command -v wrk >/dev/null || need+=(wrk)
  command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: missing ${need[*]}; run as root (or install them) first" >&2
  exit 1
fi
echo "system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Debian's etcd-server ships a service; packages must not start services here (no systemd,
# and the tests start their own etcd): policy-rc.d answering 101 tells invoke-rc.d "not now".
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${need[@]}" >&2 ||
  { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${need[@]}" >&2; }
