package webhook

import (
	"net/netip"
	"strings"
	"testing"
)

func TestVetted(t *testing.T) {
	refused := []string{"127.0.0.1", "10.1.2.3", "172.20.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
		"0.0.0.0", "::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "224.0.0.1",
		// Zones must not hide an address (netip.Prefix never matches a zoned one).
		"::1%lo", "::1%1", "fe80::1%eth0", "fd00::1%eth0", "::ffff:127.0.0.1%lo",
		// IPv4-compatible, 6to4 and NAT64 spellings of private IPv4.
		"::127.0.0.1", "::10.0.0.1", "2002:7f00:1::", "2002:a00:1::1", "2002:c0a8:101::",
		"64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b:1::a00:1",
		// Other IPv6 space that is not globally routed.
		"fec0::1", "ff02::1", "100::1", "2001:db8::1", "2001::1", "::",
	}
	allowed := []string{"93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:93.184.216.34",
		"2002:5db8:d822::1"} // 6to4 of 93.184.216.34
	for _, s := range refused {
		if Vetted(netip.MustParseAddr(s)) {
			t.Errorf("%s vetted, want refused", s)
		}
	}
	for _, s := range allowed {
		if !Vetted(netip.MustParseAddr(s)) {
			t.Errorf("%s refused, want vetted", s)
		}
	}
}

// TestAPrivateEndpointSaysHowToAllowIt: a loopback endpoint is refused
// with the flag that allows it for local testing.
func TestAPrivateEndpointSaysHowToAllowIt(t *testing.T) {
	s := &Service{}
	err := s.validateURL("http://127.0.0.1:9000/hooks")
	if err == nil || !strings.Contains(err.Error(), "--webhook-allow-private") {
		t.Fatalf("a loopback endpoint: %v; want a refusal naming --webhook-allow-private", err)
	}
	s.cfg.AllowPrivate = true
	if err := s.validateURL("http://127.0.0.1:9000/hooks"); err != nil {
		t.Fatalf("with AllowPrivate: %v", err)
	}
}
