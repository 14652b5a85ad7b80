import { BlockList, isIP } from 'node:net';

/**
 * Destinations may not reach private, loopback or link-local addresses (a configured URL must
 * not become a way into the network flagstream runs in), unless FLAGSTREAM_DESTINATION_ALLOWLIST
 * names the host or a CIDR that contains the address.
 */
export interface DestinationGuard {
  /** Throws a DESTINATION_NOT_ALLOWED error when `address` (resolved for `hostname`) is refused. */
  check(hostname: string, address: string): void;
}

const privateRanges: readonly [string, number, 'ipv4' | 'ipv6'][] = [
  ['0.0.0.0', 8, 'ipv4'],
  ['10.0.0.0', 8, 'ipv4'],
  ['100.64.0.0', 10, 'ipv4'],
  ['127.0.0.0', 8, 'ipv4'],
  ['169.254.0.0', 16, 'ipv4'],
  ['172.16.0.0', 12, 'ipv4'],
  ['192.168.0.0', 16, 'ipv4'],
  ['198.18.0.0', 15, 'ipv4'],
  ['::', 128, 'ipv6'],
  ['::1', 128, 'ipv6'],
  ['fc00::', 7, 'ipv6'],
  ['fe80::', 10, 'ipv6'],
];

export class DestinationNotAllowedError extends Error {
  readonly code = 'DESTINATION_NOT_ALLOWED';
}

function familyOf(address: string): 'ipv4' | 'ipv6' {
  return isIP(address) === 6 ? 'ipv6' : 'ipv4';
}

/** `entries`: host names, IP addresses or CIDRs (`10.0.0.0/8`, `127.0.0.1`, `hooks.internal`). */
export function createDestinationGuard(entries: readonly string[]): DestinationGuard {
  const blocked = new BlockList();
  for (const [net, prefix, family] of privateRanges) blocked.addSubnet(net, prefix, family);
  const allowed = new BlockList();
  const allowedHosts = new Set<string>();
  for (const raw of entries) {
    const entry = raw.trim().toLowerCase();
    if (entry === '') continue;
    const [net = '', prefix] = entry.split('/');
    if (isIP(net) !== 0) {
      const family = familyOf(net);
      if (prefix === undefined) allowed.addAddress(net, family);
      else allowed.addSubnet(net, Number(prefix), family);
    } else {
      allowedHosts.add(entry);
    }
  }
  return {
    check(hostname, address) {
      const host = hostname.toLowerCase().replace(/^\[|\]$/g, '');
      if (allowedHosts.has(host)) return;
      // IPv4-mapped IPv6 (::ffff:10.0.0.1) is judged as the IPv4 address it carries.
      const plain = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
      const family = familyOf(plain);
      if (!blocked.check(plain, family) || allowed.check(plain, family)) return;
      throw new DestinationNotAllowedError(
        `destination address ${plain} (${host}) is private or loopback; add it to FLAGSTREAM_DESTINATION_ALLOWLIST to allow it`,
      );
    },
  };
}
