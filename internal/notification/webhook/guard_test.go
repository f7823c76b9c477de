package webhook

import (
	"net/netip"
	"testing"
)

func TestVetted(t *testing.T) {
	refused := []string{"127.0.0.1", "10.1.2.3", "172.20.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
		"0.0.0.0", "::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "224.0.0.1"}
	allowed := []string{"93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:93.184.216.34"}
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
