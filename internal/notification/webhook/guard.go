package webhook

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// blocked are the ranges a webhook may not reach unless private addresses
// are allowed: loopback, RFC 1918 private, link-local (with cloud metadata
// at 169.254.169.254), CGNAT, "this network", unique-local and link-local
// IPv6, and multicast/reserved space.
var blocked = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
		"172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
		"::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "64:ff9b::/96", "2001:db8::/32",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// Vetted reports whether ip may be dialled for a webhook. IPv4-mapped IPv6
// addresses (::ffff:10.0.0.1) are judged as the IPv4 address they carry.
func Vetted(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsUnspecified() {
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
