// Command fakedns is an upstream DNS server for the e2e tests: it answers every A query over UDP
// on :53 with the address given by -answer, so that a test can check that Docker's embedded DNS
// forwards names it does not know (and that the answer gets back), without any outside network.
package main

import (
	"encoding/binary"
	"flag"
	"log"
	"net"
)

func main() {
	answer := flag.String("answer", "192.0.2.53", "IPv4 address every A query gets")
	flag.Parse()
	ip := net.ParseIP(*answer).To4()
	if ip == nil {
		log.Fatalf("-answer %q is not an IPv4 address", *answer)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{Port: 53})
	if err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 512)
	for {
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			log.Fatal(err)
		}
		if resp := respond(buf[:n], ip); resp != nil {
			conn.WriteToUDP(resp, from)
		}
	}
}

// respond answers a one-question query: an A record for A questions, no records otherwise.
func respond(q []byte, ip net.IP) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	end := 12
	for end < len(q) && q[end] != 0 {
		end += int(q[end]) + 1
	}
	end += 5 // the root label, QTYPE, QCLASS
	if end > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[end-4 : end-2])
	resp := append([]byte(nil), q[:end]...)
	resp[2] = 0x81 // QR, RD
	resp[3] = 0x80 // RA, NOERROR
	binary.BigEndian.PutUint16(resp[8:10], 0)
	binary.BigEndian.PutUint16(resp[10:12], 0)
	if qtype != 1 {
		binary.BigEndian.PutUint16(resp[6:8], 0)
		return resp
	}
	binary.BigEndian.PutUint16(resp[6:8], 1)
	resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
	return append(resp, ip...)
}
