package testenv

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// Test servers get ports below the kernel's ephemeral range (32768 and
// up on Linux). A port the kernel handed out for a listener on port 0
// can be handed out again to an outgoing connection, such as an S3
// request, in the moment between the probe and the server's bind.
const (
	portLow  = 20000
	portHigh = 32768
	portTry  = 200
)

// FreePort returns a TCP port on ip that was free a moment ago, chosen
// at random below the ephemeral range.
func FreePort(t testing.TB, ip string) int {
	t.Helper()
	for range portTry {
		p := portLow + rand.IntN(portHigh-portLow)
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("find a free port on %s: %v", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
