package collective

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func tcpLaunch(t *testing.T, rank, size, port int) Launch {
	return Launch{Launcher: LaunchTorchrun, Rank: rank, Size: size, LocalRank: rank, MasterAddr: "127.0.0.1", MasterPort: port}
}

// startRendezvous runs the rendezvous of size ranks in goroutines (rank 0
// last, as ranks start in any order) and returns each rank's end and the
// payload it received.
func startRendezvous(t *testing.T, size int, payload []byte, hb time.Duration) ([]*rendezvous, [][]byte) {
	t.Helper()
	port := freePort(t)
	rvs := make([]*rendezvous, size)
	got := make([][]byte, size)
	errs := make([]error, size)
	var wg sync.WaitGroup
	for r := size - 1; r >= 0; r-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := tcpLaunch(t, r, size, port)
			if r == 0 {
				rvs[0], errs[0] = serveRendezvous(l, payload, 10*time.Second, hb)
				got[0] = payload
			} else {
				rvs[r], got[r], errs[r] = joinRendezvous(l, 10*time.Second, hb)
			}
		}()
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return rvs, got
}

func TestRendezvousPayload(t *testing.T) {
	payload := bytes.Repeat([]byte{0xab, 0x00, 0x17}, 43) // 129 bytes, zeros included
	rvs, got := startRendezvous(t, 4, payload, time.Second)
	for r, b := range got {
		if !bytes.Equal(b, payload) {
			t.Errorf("rank %d received %x", r, b)
		}
	}
	// A completed run: every rank says goodbye, nobody sees a fault.
	var faults []error
	var mu sync.Mutex
	for _, rv := range rvs {
		rv.watch(func(e *PeerError) { mu.Lock(); faults = append(faults, e); mu.Unlock() })
	}
	for r := len(rvs) - 1; r >= 0; r-- {
		rvs[r].close(nil)
	}
	time.Sleep(50 * time.Millisecond)
	if len(faults) > 0 {
		t.Fatalf("faults after a clean close: %v", faults)
	}
}

// watchAll starts every rank's watchdog and collects the faults by rank.
func watchAll(rvs []*rendezvous) chan [2]any {
	ch := make(chan [2]any, len(rvs))
	for r, rv := range rvs {
		if rv != nil {
			rv.watch(func(e *PeerError) { ch <- [2]any{r, e} })
		}
	}
	return ch
}

func expectFaults(t *testing.T, ch chan [2]any, ranks []int, want string, within time.Duration) {
	t.Helper()
	seen := map[int]string{}
	deadline := time.After(within)
	for len(seen) < len(ranks) {
		select {
		case f := <-ch:
			seen[f[0].(int)] = f[1].(*PeerError).Error()
		case <-deadline:
			t.Fatalf("after %v, faults seen %v, want one on each of ranks %v", within, seen, ranks)
		}
	}
	for _, r := range ranks {
		if !strings.Contains(seen[r], want) {
			t.Errorf("rank %d: %q, want it to contain %q", r, seen[r], want)
		}
	}
}

// A rank whose process ends (its sockets close without a goodbye) is seen
// by rank 0 at once, and forwarded to the other ranks.
func TestRendezvousPeerExit(t *testing.T) {
	rvs, _ := startRendezvous(t, 3, []byte("id"), time.Second)
	dead := rvs[2]
	rvs[2] = nil
	ch := watchAll(rvs)
	start := time.Now()
	dead.peers[0].conn.Close() // what the kernel does when the process dies
	expectFaults(t, ch, []int{0, 1}, "rank 2 exited without closing", 2*time.Second)
	t.Logf("seen after %v", time.Since(start).Round(time.Millisecond))
	for _, rv := range rvs[:2] {
		rv.close(fmt.Errorf("test over"))
	}
}

// Rank 0's end is seen by every rank.
func TestRendezvousRootExit(t *testing.T) {
	rvs, _ := startRendezvous(t, 3, []byte("id"), time.Second)
	root := rvs[0]
	rvs[0] = nil
	ch := watchAll(rvs)
	for _, p := range root.peers[1:] {
		p.conn.Close()
	}
	expectFaults(t, ch, []int{1, 2}, "collective: rank 0 exited without closing", 2*time.Second)
	for _, rv := range rvs[1:] {
		rv.close(nil)
	}
}

// A rank that aborts names its reason on every rank.
func TestRendezvousAbort(t *testing.T) {
	rvs, _ := startRendezvous(t, 3, []byte("id"), time.Second)
	ch := watchAll(rvs[:2])
	rvs[2].close(fmt.Errorf("collective: bad data in shard 7"))
	expectFaults(t, ch, []int{0, 1}, "rank 2 failed: bad data in shard 7", 2*time.Second)
	for _, rv := range rvs[:2] {
		rv.close(nil)
	}
}

// A peer that is alive but silent (a lost node: no FIN ever comes) is
// declared lost after 10 heartbeat periods.
func TestRendezvousSilentPeer(t *testing.T) {
	t.Parallel()
	hb := 20 * time.Millisecond
	rvs, _ := startRendezvous(t, 2, []byte("id"), hb)
	ch := watchAll(rvs[:1]) // rank 1 neither beats nor reads
	start := time.Now()
	expectFaults(t, ch, []int{0}, "rank 1 is lost: no heartbeat", 5*time.Second)
	if d := time.Since(start); d < 10*hb {
		t.Errorf("declared lost after %v, before 10 periods", d)
	}
	rvs[0].close(nil)
	rvs[1].close(nil)
}

// Heartbeats keep a slow but alive peer: no fault over 30 periods.
func TestRendezvousHeartbeat(t *testing.T) {
	t.Parallel()
	hb := 50 * time.Millisecond // loss after 10 beats: wide enough for a loaded machine
	rvs, _ := startRendezvous(t, 2, []byte("id"), hb)
	ch := watchAll(rvs)
	select {
	case f := <-ch:
		t.Fatalf("fault between live ranks: %v", f)
	case <-time.After(30 * hb):
	}
	rvs[1].close(nil)
	rvs[0].close(nil)
}

func TestRendezvousTimeout(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	start := time.Now()
	_, err := serveRendezvous(tcpLaunch(t, 0, 3, port), []byte("id"), 300*time.Millisecond, time.Second)
	want := fmt.Sprintf("collective: rendezvous at 127.0.0.1:%d timed out after 300ms: ranks 1, 2 did not connect", port)
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timed out after %v", d)
	}
	_, _, err = joinRendezvous(tcpLaunch(t, 1, 2, port), 300*time.Millisecond, time.Second)
	want = fmt.Sprintf("collective: rank 1 could not reach the rendezvous at 127.0.0.1:%d (MASTER_ADDR:MASTER_PORT, rank 0) within 300ms", port)
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
}

// Rank 0 waits for a missing rank; one that joined learns why it ends.
func TestRendezvousPartial(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	errs := make(chan error, 1)
	go func() {
		_, _, err := joinRendezvous(tcpLaunch(t, 1, 3, port), 5*time.Second, time.Second)
		errs <- err
	}()
	_, err := serveRendezvous(tcpLaunch(t, 0, 3, port), []byte("id"), 500*time.Millisecond, time.Second)
	if err == nil || !strings.Contains(err.Error(), "rank 2 did not connect") {
		t.Fatalf("rank 0: %v", err)
	}
	if err := <-errs; err == nil || !strings.Contains(err.Error(), "rank 1 refused by the rendezvous") || !strings.Contains(err.Error(), "rank 2 did not connect") {
		t.Fatalf("rank 1: %v", err)
	}
}

func TestRendezvousMismatch(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name       string
		rank, size int
		want       string
	}{
		{"world size", 1, 2, "with WORLD_SIZE=2, rank 0 has 3"},
		{"duplicate rank", 1, 3, "two processes joined the rendezvous"},
	} {
		port := freePort(t)
		root, legit := make(chan error, 1), make(chan error, 1)
		go func() {
			_, err := serveRendezvous(tcpLaunch(t, 0, 3, port), []byte("id"), 3*time.Second, time.Second)
			root <- err
		}()
		go func() {
			_, _, err := joinRendezvous(tcpLaunch(t, 1, 3, port), 3*time.Second, time.Second)
			legit <- err
		}()
		if c.name == "duplicate rank" {
			time.Sleep(200 * time.Millisecond) // the well-behaved rank 1 first
		}
		_, _, err := joinRendezvous(tcpLaunch(t, c.rank, c.size, port), 3*time.Second, time.Second)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: the odd rank got %v, want %q", c.name, err, c.want)
		}
		if err := <-root; err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: rank 0 got %v, want %q", c.name, err, c.want)
		}
		// The well-behaved rank is refused with the reason, or finds the
		// rendezvous gone if it came after rank 0 gave up.
		if err := <-legit; err == nil {
			t.Errorf("%s: the well-behaved rank 1 joined a failed rendezvous", c.name)
		}
	}
}

// Another program at MASTER_ADDR:MASTER_PORT (here one that greets with a
// banner, as SSH or SMTP do) is named as such, not read as a frame of
// 800 MB.
func TestRendezvousForeignServer(t *testing.T) {
	t.Parallel()
	// an SSH server's banner, and an HTTP server's answer (whose "H" is a
	// frame letter, followed by a length of 800 MB)
	for _, banner := range []string{"SSH-2.0-OpenSSH_9.2p1 Debian\r\n", "HTTP/1.1 400 Bad Request\r\n"} {
		t.Run(banner[:4], func(t *testing.T) { foreignServer(t, banner) })
	}
}

func foreignServer(t *testing.T, banner string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(banner))
			time.Sleep(time.Second)
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	_, _, err = joinRendezvous(tcpLaunch(t, 1, 2, port), 3*time.Second, time.Second)
	want := fmt.Sprintf(`collective: rank 1: 127.0.0.1:%d (MASTER_ADDR:MASTER_PORT) is not rank 0's rendezvous: it answered %q, which is not the rendezvous protocol`, port, banner)
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}
