import { networkInterfaces } from 'node:os';
// ipaddr.js parses every textual form of an address (compressed IPv6, embedded dotted quads,
// zone ids) and carries the IANA special-purpose registries as range(). Node's BlockList only
// matches CIDRs: it cannot say *which* special range an address is in, nor hand us the bytes to
// decode an IPv4 address embedded in an IPv6 one, and hand-parsing IPv6 is what a library is for.
import ipaddr from 'ipaddr.js';
import { AppError } from '../domain/errors.js';

/**
 * Destinations may reach only globally routable unicast addresses (a configured URL must not
 * become a way into the network flagstream runs in), unless FLAGSTREAM_DESTINATION_ALLOWLIST
 * names the host, the address, or a CIDR that contains it.
 *
 * Refused: every range of the IANA IPv4 and IPv6 special-purpose registries that is not plain
 * unicast (loopback, private, CGNAT, link-local, TEST-NETs, benchmarking, 0/8, 240/4, broadcast,
 * multicast, ULA, site-local, documentation, discard, ORCHID, AMT, AS112, …), every IPv6 address
 * outside 2000::/3 (the only block IANA allocates as global unicast; this includes the deprecated
 * IPv4-compatible ::a.b.c.d), and the addresses of this machine's own interfaces. IPv6 forms that
 * carry an IPv4 address (IPv4-mapped, IPv4-translated, NAT64 64:ff9b::/96, 6to4, Teredo) are
 * judged by the IPv4 address(es) they carry; the local-use NAT64 prefix 64:ff9b:1::/48 is refused.
 */
export interface DestinationGuard {
  /** Connection time: throws DestinationNotAllowedError when `address` (resolved for `hostname`) is refused. */
  check(hostname: string, address: string): void;
  /**
   * Configuration time, without DNS: why a destination host may not be configured, or undefined.
   * Certain refusals only: a literal address that is refused, a loopback name (`localhost`), or a
   * name for local use (single label, `.local`, `.internal`, …) while the allowlist opens no
   * address at all. Other names are judged at connection time, after DNS, on every connection.
   */
  refusalForHost(hostname: string): string | undefined;
}

export class DestinationNotAllowedError extends Error {
  readonly code = 'DESTINATION_NOT_ALLOWED';
}

type Address = ipaddr.IPv4 | ipaddr.IPv6;

const rangeDescriptions: Readonly<Record<string, string>> = {
  unspecified: 'unspecified ("this network", 0.0.0.0/8 or ::)',
  broadcast: 'broadcast (255.255.255.255)',
  multicast: 'multicast',
  linkLocal: 'link-local (169.254.0.0/16 or fe80::/10)',
  loopback: 'loopback',
  carrierGradeNat: 'shared address space (CGNAT, 100.64.0.0/10)',
  private: 'private (RFC 1918)',
  benchmarking: 'benchmarking (198.18.0.0/15 or 2001:2::/48)',
  amt: 'AMT anycast',
  as112: 'AS112 anycast',
  as112v6: 'AS112 anycast',
  uniqueLocal: 'unique local (fc00::/7)',
  deprecatedSiteLocal: 'site-local (fec0::/10)',
  discard: 'discard-only (100::/64)',
  deprecatedOrchid: 'ORCHID',
  orchid2: 'ORCHIDv2',
  droneRemoteIdProtocolEntityTags: 'drone remote ID tags',
  segmentRouting: 'segment routing SIDs (5f00::/16)',
};

/** Names for the blocks ipaddr.js groups as `reserved`, so a refusal says which one. */
const reservedBlocks: Record<string, [Address, number][]> = {
  'IETF protocol assignments (192.0.0.0/24)': [ipaddr.parseCIDR('192.0.0.0/24')],
  'documentation (TEST-NET-1, 192.0.2.0/24)': [ipaddr.parseCIDR('192.0.2.0/24')],
  'documentation (TEST-NET-2, 198.51.100.0/24)': [ipaddr.parseCIDR('198.51.100.0/24')],
  'documentation (TEST-NET-3, 203.0.113.0/24)': [ipaddr.parseCIDR('203.0.113.0/24')],
  'benchmarking (198.18.0.0/15)': [ipaddr.parseCIDR('198.18.0.0/15')],
  'deprecated 6to4 relay anycast (192.88.99.0/24)': [ipaddr.parseCIDR('192.88.99.0/24')],
  'reserved (240.0.0.0/4)': [ipaddr.parseCIDR('240.0.0.0/4')],
  'documentation (2001:db8::/32)': [ipaddr.parseCIDR('2001:db8::/32')],
  'documentation (3fff::/20)': [ipaddr.parseCIDR('3fff::/20')],
  'IETF protocol assignments (2001::/23)': [ipaddr.parseCIDR('2001::/23')],
};

const globalUnicastV6 = ipaddr.IPv6.parseCIDR('2000::/3');
const nat64WellKnown = ipaddr.IPv6.parseCIDR('64:ff9b::/96');

/** Names that resolve only inside a network: RFC 6761 (.localhost), 6762 (.local, and App. G), 8375 (.home.arpa), ICANN (.internal). */
const loopbackNames = new Set(['localhost', 'localhost.localdomain', 'ip6-localhost', 'ip6-loopback']);
const localUseSuffixes = ['.local', '.internal', '.home.arpa', '.localdomain', '.intranet', '.private', '.corp', '.home', '.lan'];

function v4FromParts(high: number, low: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff]);
}

/** The IPv4 address(es) an IPv6 address carries, for the forms that deliver to them; undefined when none. */
function embeddedIPv4(address: ipaddr.IPv6): { form: string; v4: ipaddr.IPv4[] } | undefined {
  const p = address.parts as [number, number, number, number, number, number, number, number];
  switch (address.range()) {
    case 'ipv4Mapped':
      return { form: 'IPv4-mapped', v4: [v4FromParts(p[6], p[7])] };
    case 'rfc6145':
      return { form: 'IPv4-translated', v4: [v4FromParts(p[6], p[7])] };
    case 'rfc6052':
      return address.match(nat64WellKnown) ? { form: 'NAT64', v4: [v4FromParts(p[6], p[7])] } : undefined;
    case '6to4':
      return { form: '6to4', v4: [v4FromParts(p[1], p[2])] };
    case 'teredo':
      // RFC 4380: the server's address in bits 32–63, the client's (inverted) in the last 32 bits.
      return { form: 'Teredo', v4: [v4FromParts(p[2], p[3]), v4FromParts(p[6] ^ 0xffff, p[7] ^ 0xffff)] };
    default:
      return undefined;
  }
}

/** Why an address is not globally routable unicast (ranges only; no allowlist, no interfaces), or undefined. */
function nonPublicRange(address: Address): string | undefined {
  if (address.kind() === 'ipv6') {
    const v6 = address as ipaddr.IPv6;
    const range = v6.range();
    if (range === 'rfc6052' && !v6.match(nat64WellKnown)) return 'local-use NAT64 (64:ff9b:1::/48)';
    if (range === 'unicast') {
      if (v6.match(globalUnicastV6)) return undefined;
      const p = v6.parts;
      if (p.slice(0, 6).every((part) => part === 0)) return 'IPv4-compatible (::a.b.c.d, deprecated)';
      return 'outside IPv6 global unicast (2000::/3)';
    }
    if (embeddedIPv4(v6) !== undefined) return undefined;
    return describe(v6, range);
  }
  const range = (address as ipaddr.IPv4).range();
  return range === 'unicast' ? undefined : describe(address, range);
}

function describe(address: Address, range: string): string {
  if (range === 'reserved') return ipaddr.subnetMatch(address, reservedBlocks, 'reserved (IANA special-purpose registry)');
  return rangeDescriptions[range] ?? range;
}

/** Parses an address as DNS, a URL host or a socket gives it: brackets, a zone id and a trailing dot are accepted. */
function parseAddress(text: string): Address | undefined {
  const bare = text.replace(/^\[|\]$/g, '');
  if (!ipaddr.isValid(bare)) return undefined;
  // ipaddr.js also accepts historic IPv4 forms (0x7f.1, 2130706433); URL hosts and DNS answers
  // are already normalised to dotted quads, so accepting them here refuses nothing extra.
  return ipaddr.parse(bare);
}

function normaliseHost(hostname: string): string {
  return hostname.trim().toLowerCase().replace(/^\[|\]$/g, '').replace(/\.+$/, '');
}

function ownInterfaceAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((entries) => (entries ?? []).map((entry) => entry.address));
}

export interface DestinationGuardOptions {
  /** This machine's addresses, read at each check (interfaces come and go); os.networkInterfaces() by default. */
  readonly interfaceAddresses?: () => readonly string[];
}

/** `entries`: host names, IP addresses or CIDRs (`10.0.0.0/8`, `127.0.0.1`, `hooks.internal`), or the comma-separated text of FLAGSTREAM_DESTINATION_ALLOWLIST. */
export function createDestinationGuard(entries: string | readonly string[], options: DestinationGuardOptions = {}): DestinationGuard {
  const interfaceAddresses = options.interfaceAddresses ?? ownInterfaceAddresses;
  const isOwnInterfaceAddress = (address: Address): boolean => {
    const normalised = address.toNormalizedString();
    return interfaceAddresses().some((text) => {
      const own = parseAddress(text.split('%')[0] ?? '');
      return own !== undefined && own.kind() === address.kind() && own.toNormalizedString() === normalised;
    });
  };
  const list = typeof entries === 'string' ? entries.split(',') : entries;
  const allowedRanges: [Address, number][] = [];
  const allowedHosts = new Set<string>();
  for (const raw of list) {
    const entry = normaliseHost(raw);
    if (entry === '') continue;
    if (entry.includes('/')) {
      if (!ipaddr.isValidCIDR(entry)) {
        throw new AppError('FLAGSTREAM_ERR_CONFIG', `FLAGSTREAM_DESTINATION_ALLOWLIST: "${entry}" is not a valid CIDR (e.g. 10.0.0.0/8 or fd00::/8)`, { field: 'FLAGSTREAM_DESTINATION_ALLOWLIST' });
      }
      allowedRanges.push(ipaddr.parseCIDR(entry));
      continue;
    }
    const address = parseAddress(entry);
    if (address !== undefined) allowedRanges.push([address, address.kind() === 'ipv4' ? 32 : 128]);
    else allowedHosts.add(entry);
  }

  const isAllowlisted = (address: Address) => allowedRanges.some(([net, bits]) => net.kind() === address.kind() && address.match(net, bits));

  /** Why `address` is refused, or undefined when it may be reached. */
  const refusalOf = (address: Address): string | undefined => {
    if (isAllowlisted(address)) return undefined;
    if (address.kind() === 'ipv6') {
      const embedded = embeddedIPv4(address as ipaddr.IPv6);
      if (embedded !== undefined) {
        for (const v4 of embedded.v4) {
          const refusal = refusalOf(v4);
          if (refusal !== undefined) return `${embedded.form} form of ${v4.toString()}, which is ${refusal}`;
        }
        return undefined;
      }
    }
    const range = nonPublicRange(address);
    if (range !== undefined) return range;
    return isOwnInterfaceAddress(address) ? "an address of this machine's own interfaces" : undefined;
  };

  const refusalMessage = (shown: string, host: string, why: string) =>
    `destination address ${shown}${host === shown ? '' : ` (${host})`} is not public: ${why}; add it to FLAGSTREAM_DESTINATION_ALLOWLIST to allow it`;

  return {
    check(hostname, address) {
      const host = normaliseHost(hostname);
      if (allowedHosts.has(host)) return;
      const parsed = parseAddress(address);
      // Fail closed: what cannot be read cannot be judged.
      const why = parsed === undefined ? 'not a readable IP address' : refusalOf(parsed);
      if (why !== undefined) throw new DestinationNotAllowedError(refusalMessage(parsed?.toString() ?? address, host, why));
    },
    refusalForHost(hostname) {
      const host = normaliseHost(hostname);
      if (allowedHosts.has(host)) return undefined;
      const literal = parseAddress(host);
      if (literal !== undefined) {
        const why = refusalOf(literal);
        return why === undefined ? undefined : refusalMessage(literal.toString(), host, why);
      }
      if (loopbackNames.has(host) || host.endsWith('.localhost')) {
        // RFC 6761: these names always resolve to loopback.
        const loopback = [ipaddr.parse('127.0.0.1'), ipaddr.parse('::1')];
        return loopback.some((address) => refusalOf(address) === undefined)
          ? undefined
          : `destination host ${host} is loopback; add it (or 127.0.0.1) to FLAGSTREAM_DESTINATION_ALLOWLIST to allow it`;
      }
      const localUse = !host.includes('.') || localUseSuffixes.some((suffix) => host.endsWith(suffix));
      // A local name's address is unknown until DNS; with no address allowlisted at all, every
      // answer it can have is refused. Otherwise the connection-time check decides.
      if (localUse && allowedRanges.length === 0) {
        return `destination host ${host} is a name for local use that resolves only inside a network; add it to FLAGSTREAM_DESTINATION_ALLOWLIST to allow it`;
      }
      return undefined;
    },
  };
}
