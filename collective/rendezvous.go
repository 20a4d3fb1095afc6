package collective

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The TCP rendezvous of torchrun-style launches: rank 0 listens at
// MASTER_ADDR:MASTER_PORT, every other rank connects (retrying until the
// timeout, since ranks start in any order) and says who it is; when all
// have come, rank 0 sends each the bootstrap bytes (the NCCL unique id).
// It carries nothing else: the collectives themselves run in NCCL.
//
// The connections then stay open as a watchdog: each side sends a
// heartbeat every period and a goodbye when it closes. A peer process that
// ends without a goodbye (a crash, a kill, an exit on error) closes its
// socket, which the other side reads at once; a peer that goes silent (a
// lost node) is declared lost after 10 periods. Rank 0 forwards any fault
// to the other ranks, so every rank stops with the same error.

// Frame types.
const (
	frameHello   = 'H' // rank -> 0: magic, version, size, rank, pid, host
	frameWelcome = 'W' // 0 -> rank: the bootstrap bytes
	frameReject  = 'R' // 0 -> rank: why it was refused
	frameBeat    = 'B' // both ways: alive
	frameBye     = 'C' // both ways: closing after a completed run
	frameAbort   = 'A' // both ways: this rank failed, with the reason
	frameFault   = 'F' // 0 -> rank: another rank failed (rank, reason)
)

const (
	rdvMagic      = "fmgpurdv"
	rdvVersion    = 1
	maxFrame      = 1 << 20
	silentPeriods = 10 // heartbeats missed before a peer is lost
)

type peer struct {
	rank int
	host string
	pid  int
	conn net.Conn
	r    *bufio.Reader
	wmu  sync.Mutex
	done atomic.Bool // it said goodbye
}

func (p *peer) String() string {
	if p.host == "" {
		return fmt.Sprintf("rank %d", p.rank)
	}
	return fmt.Sprintf("rank %d (pid %d on %s)", p.rank, p.pid, p.host)
}

func (p *peer) send(typ byte, payload []byte, timeout time.Duration) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if timeout > 0 {
		p.conn.SetWriteDeadline(time.Now().Add(timeout))
	}
	var hdr [5]byte
	hdr[0] = typ
	binary.LittleEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := p.conn.Write(append(hdr[:], payload...)); err != nil {
		return err
	}
	return nil
}

// foreignError is a reply that is no frame of this protocol: another
// program listens at the address.
type foreignError struct{ start []byte }

func (e *foreignError) Error() string {
	return fmt.Sprintf("it answered %q, which is not the rendezvous protocol", e.start)
}

func readFrame(r *bufio.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.LittleEndian.Uint32(hdr[1:])
	if !strings.ContainsRune("HWRBCAF", rune(hdr[0])) || n > maxFrame {
		// "HTTP/1.1 400": a frame letter, then a length of 800 MB
		start, _ := r.Peek(min(r.Buffered(), 27))
		return 0, nil, &foreignError{append(hdr[:], start...)}
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, nil, err
	}
	return hdr[0], b, nil
}

// rendezvous is one rank's side of the bootstrap and, after it, of the
// watchdog.
type rendezvous struct {
	rank, size int
	addr       string // host:port, for messages
	peers      []*peer
	heartbeat  time.Duration
	onFault    func(*PeerError)

	closing atomic.Bool
	faulted atomic.Bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

func helloPayload(size, rank int) []byte {
	host, _ := os.Hostname()
	b := append([]byte(rdvMagic), 0, 0)
	binary.LittleEndian.PutUint16(b[len(rdvMagic):], rdvVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(size))
	b = binary.LittleEndian.AppendUint32(b, uint32(rank))
	b = binary.LittleEndian.AppendUint32(b, uint32(os.Getpid()))
	return append(b, host...)
}

type hello struct {
	size, rank, pid int
	host            string
}

func parseHello(b []byte) (hello, bool) {
	n := len(rdvMagic)
	if len(b) < n+2+12 || string(b[:n]) != rdvMagic || binary.LittleEndian.Uint16(b[n:]) != rdvVersion {
		return hello{}, false
	}
	b = b[n+2:]
	return hello{
		size: int(binary.LittleEndian.Uint32(b)),
		rank: int(binary.LittleEndian.Uint32(b[4:])),
		pid:  int(binary.LittleEndian.Uint32(b[8:])),
		host: string(b[12:]),
	}, true
}

// listenAddr is where rank 0 listens: MASTER_ADDR itself when it is a
// loopback address (a one-node run stays off the network), else every
// interface, as MASTER_ADDR may name this host by an address that is not
// bound locally (a NAT or load-balancer name).
func listenAddr(host string, port int) string {
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() || host == "localhost" {
		return net.JoinHostPort(host, strconv.Itoa(port))
	}
	return net.JoinHostPort("", strconv.Itoa(port))
}

// serveRendezvous is rank 0's side: it waits until every other rank has
// said hello, then sends each the payload.
func serveRendezvous(l Launch, payload []byte, timeout, heartbeat time.Duration) (*rendezvous, error) {
	addr := net.JoinHostPort(l.MasterAddr, strconv.Itoa(l.MasterPort))
	ln, err := net.Listen("tcp", listenAddr(l.MasterAddr, l.MasterPort))
	if err != nil {
		return nil, fmt.Errorf("collective: rank 0 cannot listen for the rendezvous on port %d (%s): %v", l.MasterPort, EnvMasterPort, err)
	}
	defer ln.Close()
	deadline := time.Now().Add(timeout)
	ln.(*net.TCPListener).SetDeadline(deadline)
	rv := &rendezvous{rank: 0, size: l.Size, addr: addr, peers: make([]*peer, l.Size), heartbeat: heartbeat, stop: make(chan struct{})}
	fail := func(err error) (*rendezvous, error) {
		for _, p := range rv.peers {
			if p != nil {
				p.send(frameReject, []byte(err.Error()), time.Second)
				p.conn.Close()
			}
		}
		return nil, err
	}
	for joined := 1; joined < l.Size; {
		conn, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fail(fmt.Errorf("collective: rendezvous at %s timed out after %v: %s did not connect (was every rank started, with the same %s and %s?)",
					addr, timeout, rankList(missing(rv.peers)), EnvMasterAddr, EnvMasterPort))
			}
			return fail(fmt.Errorf("collective: rendezvous at %s: %v", addr, err))
		}
		p := &peer{conn: conn, r: bufio.NewReader(conn)}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		typ, b, err := readFrame(p.r)
		h, ok := parseHello(b)
		if err != nil || typ != frameHello || !ok {
			conn.Close() // not an fmgpu rank of this version: ignore it
			continue
		}
		p.rank, p.host, p.pid = h.rank, h.host, h.pid
		switch {
		case h.size != l.Size:
			err := fmt.Errorf("collective: %s joined the rendezvous at %s with %s=%d, rank 0 has %d", p, addr, EnvWorldSize, h.size, l.Size)
			p.send(frameReject, []byte(err.Error()), time.Second)
			conn.Close()
			return fail(err)
		case h.rank < 1 || h.rank >= l.Size:
			err := fmt.Errorf("collective: a process (pid %d on %s) joined the rendezvous at %s as rank %d, not in 1..%d", h.pid, h.host, addr, h.rank, l.Size-1)
			p.send(frameReject, []byte(err.Error()), time.Second)
			conn.Close()
			return fail(err)
		case rv.peers[h.rank] != nil:
			err := fmt.Errorf("collective: two processes joined the rendezvous at %s as rank %d: %s and pid %d on %s", addr, h.rank, rv.peers[h.rank], h.pid, h.host)
			p.send(frameReject, []byte(err.Error()), time.Second)
			conn.Close()
			return fail(err)
		}
		conn.SetReadDeadline(time.Time{})
		rv.peers[h.rank] = p
		joined++
	}
	for _, p := range rv.peers[1:] {
		if err := p.send(frameWelcome, payload, 10*time.Second); err != nil {
			return fail(fmt.Errorf("collective: rendezvous at %s: sending the bootstrap to %s: %v", addr, p, err))
		}
	}
	return rv, nil
}

// joinRendezvous is the side of a rank other than 0: it connects to rank
// 0, retrying until the timeout, and returns the payload rank 0 sends once
// every rank has joined.
func joinRendezvous(l Launch, timeout, heartbeat time.Duration) (*rendezvous, []byte, error) {
	addr := net.JoinHostPort(l.MasterAddr, strconv.Itoa(l.MasterPort))
	deadline := time.Now().Add(timeout)
	var conn net.Conn
	var lastErr error
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		d := net.Dialer{Deadline: deadline, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err == nil {
			conn = c
			break
		}
		lastErr = err
		if time.Now().Add(wait).After(deadline) {
			return nil, nil, fmt.Errorf("collective: rank %d could not reach the rendezvous at %s (%s:%s, rank 0) within %v: %v",
				l.Rank, addr, EnvMasterAddr, EnvMasterPort, timeout, lastErr)
		}
		time.Sleep(wait)
	}
	p := &peer{rank: 0, conn: conn, r: bufio.NewReader(conn)}
	if err := p.send(frameHello, helloPayload(l.Size, l.Rank), 10*time.Second); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("collective: rank %d: rendezvous at %s: %v", l.Rank, addr, err)
	}
	// Rank 0 answers when the last rank has joined, at most its own
	// timeout after it started: allow a little more than ours.
	conn.SetReadDeadline(deadline.Add(5 * time.Second))
	typ, b, err := readFrame(p.r)
	conn.SetReadDeadline(time.Time{})
	switch {
	case err != nil:
		conn.Close()
		var ne net.Error
		var fe *foreignError
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return nil, nil, fmt.Errorf("collective: rank %d: the rendezvous at %s did not complete within %v (rank 0 is waiting for other ranks, or another program listens at %s:%s)", l.Rank, addr, timeout, EnvMasterAddr, EnvMasterPort)
		case errors.As(err, &fe):
			return nil, nil, fmt.Errorf("collective: rank %d: %s (%s:%s) is not rank 0's rendezvous: %v", l.Rank, addr, EnvMasterAddr, EnvMasterPort, err)
		}
		return nil, nil, fmt.Errorf("collective: rank %d: the rendezvous at %s closed before it completed: %v", l.Rank, addr, err)
	case typ == frameReject:
		conn.Close()
		return nil, nil, fmt.Errorf("collective: rank %d refused by the rendezvous at %s: %s", l.Rank, addr, strings.TrimPrefix(string(b), "collective: "))
	case typ != frameWelcome:
		conn.Close()
		return nil, nil, fmt.Errorf("collective: rank %d: unexpected frame %q from the rendezvous at %s", l.Rank, typ, addr)
	}
	rv := &rendezvous{rank: l.Rank, size: l.Size, addr: addr, peers: []*peer{p}, heartbeat: heartbeat, stop: make(chan struct{})}
	return rv, b, nil
}

func missing(peers []*peer) []int {
	var m []int
	for r := 1; r < len(peers); r++ {
		if peers[r] == nil {
			m = append(m, r)
		}
	}
	return m
}

// rankList writes ranks as "rank 3" or "ranks 1, 2, 5".
func rankList(ranks []int) string {
	sort.Ints(ranks)
	s := make([]string, len(ranks))
	for i, r := range ranks {
		s[i] = strconv.Itoa(r)
	}
	if len(s) == 1 {
		return "rank " + s[0]
	}
	return "ranks " + strings.Join(s, ", ")
}

// watch starts the heartbeats and the readers; onFault is called once,
// with the first fault.
func (rv *rendezvous) watch(onFault func(*PeerError)) {
	rv.onFault = onFault
	live := rv.livePeers()
	for _, p := range live {
		rv.wg.Add(1)
		go rv.read(p)
	}
	rv.wg.Add(1)
	go func() {
		defer rv.wg.Done()
		t := time.NewTicker(rv.heartbeat)
		defer t.Stop()
		for {
			select {
			case <-rv.stop:
				return
			case <-t.C:
				for _, p := range live {
					if !p.done.Load() {
						p.send(frameBeat, nil, 5*rv.heartbeat)
					}
				}
			}
		}
	}()
}

func (rv *rendezvous) livePeers() []*peer {
	var ps []*peer
	for _, p := range rv.peers {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

func (rv *rendezvous) read(p *peer) {
	defer rv.wg.Done()
	silence := silentPeriods * rv.heartbeat
	for {
		p.conn.SetReadDeadline(time.Now().Add(silence))
		typ, b, err := readFrame(p.r)
		if rv.closing.Load() {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				rv.fault(&PeerError{Rank: p.rank, Via: -1, Reason: fmt.Sprintf("is lost: no heartbeat from %s for %v", p, silence)})
			} else {
				rv.fault(&PeerError{Rank: p.rank, Via: -1, Reason: fmt.Sprintf("exited without closing: its rendezvous connection (%s) ended: %v", p, errText(err))})
			}
			return
		}
		switch typ {
		case frameBeat:
		case frameBye:
			p.done.Store(true)
			return
		case frameAbort:
			rv.fault(&PeerError{Rank: p.rank, Via: -1, Reason: "failed: " + strings.TrimPrefix(string(b), "collective: ")})
			return
		case frameFault:
			if len(b) >= 8 {
				rv.fault(&PeerError{Rank: int(binary.LittleEndian.Uint32(b)), Via: int(binary.LittleEndian.Uint32(b[4:])), Reason: string(b[8:])})
			}
			return
		}
	}
}

func errText(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "end of stream"
	}
	return err.Error()
}

// fault reports the first fault: rank 0 forwards it to every other rank
// that has not said goodbye, then the callback runs.
func (rv *rendezvous) fault(e *PeerError) {
	if !rv.faulted.CompareAndSwap(false, true) {
		return
	}
	if rv.rank == 0 {
		via := e.Via
		if via < 0 {
			via = 0
		}
		msg := binary.LittleEndian.AppendUint32(nil, uint32(e.Rank))
		msg = binary.LittleEndian.AppendUint32(msg, uint32(via))
		msg = append(msg, e.Reason...)
		for _, p := range rv.livePeers() {
			if p.rank != e.Rank && !p.done.Load() {
				p.send(frameFault, msg, time.Second)
			}
		}
	}
	// On a goroutine of its own: the callback may close the rendezvous,
	// which waits for this reader.
	if rv.onFault != nil {
		go rv.onFault(e)
	}
}

// close says goodbye (frameBye after a completed run, frameAbort with the
// reason after a failure) and stops the watchdog.
func (rv *rendezvous) close(abort error) {
	if !rv.closing.CompareAndSwap(false, true) {
		return
	}
	typ, msg := byte(frameBye), []byte(nil)
	if abort != nil {
		typ, msg = frameAbort, []byte(abort.Error())
	}
	for _, p := range rv.livePeers() {
		if !p.done.Load() {
			p.send(typ, msg, time.Second)
		}
		p.conn.Close()
	}
	close(rv.stop)
	rv.wg.Wait()
}
