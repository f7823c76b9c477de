package app

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// listenOn listens on addr, given by --flag: an address in use says so
// and which flag picks another, other failures say what is wrong with the
// address.
func listenOn(flag, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("--%s %s: the address is in use (is another ordermesh running? pick another with --%s)", flag, addr, flag)
	}
	if err != nil {
		return nil, fmt.Errorf("--%s %s: %w", flag, addr, err)
	}
	return ln, nil
}

// checkPorts fails, before anything is created, when one of the
// addresses (by flag; empty ones are off) cannot be listened on: a busy
// port must not leave a fresh data directory behind.
func checkPorts(addrs map[string]string) error {
	for _, flag := range []string{"addr", "metrics-addr", "nats-listen", "psp-listen", "pprof"} {
		addr := addrs[flag]
		if addr == "" {
			continue
		}
		ln, err := listenOn(flag, addr)
		if err != nil {
			return err
		}
		ln.Close()
	}
	return nil
}
