// Command sink is the container side of bench/network: a static TCP server (it runs in a busybox
// container, which has no libc) with two modes chosen by the first byte of a connection:
//
//	'c' count: read to EOF, answer the number of bytes read (decimal), close
//	'p' ping:  answer 'p' at once, close
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
)

func main() {
	addr := flag.String("listen", ":5001", "address to listen on")
	flag.Parse()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("listening on", l.Addr())
	for {
		c, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serve(c)
	}
}

func serve(c net.Conn) {
	defer c.Close()
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	switch mode[0] {
	case 'p':
		c.Write([]byte{'p'})
	case 'c':
		n, _ := io.Copy(io.Discard, c)
		c.Write([]byte(strconv.FormatInt(n, 10)))
	}
}
