package embedded

import (
	"net"
	"testing"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// BenchmarkRouteQuery is one 105 round trip over loopback: encode the request, write it, read and decode the
// response frame (the body is not parsed).
func BenchmarkRouteQuery(b *testing.B) {
	for _, tc := range []struct {
		name    string
		version int32
	}{{"legacy", remoting.VersionClientGo}, {"standard", remoting.VersionStandardJSON}} {
		b.Run(tc.name, func(b *testing.B) {
			s := demo(b)
			nc, err := net.Dial("tcp", s.Addr())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			r := remoting.NewReader(nc, 0)
			request := routeReq(DemoTopic)
			request.Version = tc.version
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				request.Opaque++
				if buf, err = remoting.AppendFrame(buf[:0], request); err != nil {
					b.Fatal(err)
				}
				if _, err := nc.Write(buf); err != nil {
					b.Fatal(err)
				}
				resp, err := r.Read()
				if err != nil || resp.Code != remoting.Success || resp.Opaque != request.Opaque {
					b.Fatalf("%v %v", resp, err)
				}
			}
		})
	}
}
