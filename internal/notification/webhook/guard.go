package webhook

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// blocked are the ranges a webhook may not reach unless private addresses
// are allowed: every range IANA's special-purpose registries mark as not
// globally reachable (loopback, RFC 1918 private, link-local with cloud
// metadata at 169.254.169.254, CGNAT, "this network", benchmarking,
// documentation, multicast and reserved space; unique-local, site-local,
// discard-only, Teredo and ORCHID IPv6, NAT64 with its local-use prefix).
var blocked = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
		"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// globalUnicast is the only IPv6 space that is routed on the internet.
var globalUnicast = netip.MustParsePrefix("2000::/3")

// sixToFour carries an IPv4 address in bits 16-48 (RFC 3056).
var sixToFour = netip.MustParsePrefix("2002::/16")

// Vetted reports whether ip may be dialled for a webhook: only globally
// routable unicast addresses, whatever their spelling. A zone is dropped
// before judging (fe80::1%eth0 is fe80::1); IPv4-mapped addresses
// (::ffff:10.0.0.1) and 6to4 addresses (2002:0a00:0001::) are judged as the
// IPv4 address they carry; IPv6 outside 2000::/3 (IPv4-compatible ::a.b.c.d,
// unique-local, link-local, site-local, multicast) is refused.
func Vetted(ip netip.Addr) bool {
	ip = ip.WithZone("").Unmap()
	if sixToFour.Contains(ip) {
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
	}
	if !ip.IsValid() || ip.IsUnspecified() || (ip.Is6() && !globalUnicast.Contains(ip)) {
		return false
	}
	for _, p := range blocked {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// guardedDialer dials only vetted addresses (the check runs on the address
// actually connected to, after DNS resolution, so a name that resolves to
// a private address is refused too).
func guardedDialer(allowPrivate bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: connectTimeout}
	if !allowPrivate {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("webhook address %q: %w", address, err)
			}
			if !Vetted(ap.Addr()) {
				return fmt.Errorf("webhook address %s is private, loopback, link-local or reserved; refused (--webhook-allow-private allows it)", ap.Addr())
			}
			return nil
		}
	}
	return d.DialContext
}
