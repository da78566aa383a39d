package activator

import (
	"net"
	"sync"
)

// limitConnections bounds the connections each client address keeps open
// through listener to perClient (0: no bound): one more is closed as it
// comes, and refused counts it. A client that opens thousands of
// connections, each trickling a body in, exhausts neither the activator's
// file descriptors nor other clients' turn.
func limitConnections(listener net.Listener, perClient int, refused func()) net.Listener {
	if perClient == 0 {
		return listener
	}
	return &clientLimit{Listener: listener, perClient: perClient, refused: refused, open: map[string]int{}}
}

type clientLimit struct {
	net.Listener
	perClient int
	refused   func()
	mu        sync.Mutex
	open      map[string]int
}

func (l *clientLimit) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client := clientAddress(conn.RemoteAddr())
		l.mu.Lock()
		admitted := l.open[client] < l.perClient
		if admitted {
			l.open[client]++
		}
		l.mu.Unlock()
		if admitted {
			return &clientConn{Conn: conn, release: sync.OnceFunc(func() { l.release(client) })}, nil
		}
		l.refused()
		_ = conn.Close()
	}
}

func (l *clientLimit) release(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[client]--; l.open[client] <= 0 {
		delete(l.open, client)
	}
}

// clientAddress is the host of addr: a client's connections share it.
func clientAddress(addr net.Addr) string {
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	return addr.String()
}

// clientConn gives its client's place back when it closes.
type clientConn struct {
	net.Conn
	release func()
}

func (c *clientConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// CloseWrite lets the HTTP server half-close the connection after an error
// answer, as it does on a bare TCP connection, so the client reads the
// answer instead of a reset.
func (c *clientConn) CloseWrite() error {
	if half, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return half.CloseWrite()
	}
	return nil
}
