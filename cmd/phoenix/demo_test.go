package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller/config"
)

// holdPort listens on addr until the test ends, as another program on the
// machine would; a port some other program already holds serves as well.
// It returns the port held.
func holdPort(t *testing.T, addr string) int {
	t.Helper()
	l, err := net.Listen("tcp4", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		t.Logf("%s is held by another program already", addr)
		_, port, _ := net.SplitHostPort(addr)
		p, _ := net.LookupPort("tcp", port)
		return p
	}
	if err != nil {
		t.Fatalf("hold %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// converged checks the demo's closing line: every server replaced.
func converged(t *testing.T, out string) {
	t.Helper()
	if !strings.Contains(out, "Every server now runs the patched image; 12 servers replaced") {
		t.Errorf("the demo did not converge:\n%s", out)
	}
}

// The demo follows the port its simulated applications got: with the one
// they prefer held on 0.0.0.0, its checks and pool use the other.
func TestDemoWithItsAppPortHeld(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes about ten seconds")
	}
	held := holdPort(t, "0.0.0.0:0")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := runDemo(ctx, &out, &out, &cli.Globals{LogLevel: "warn", Output: "text"}, &demoFlags{seed: 1, timeout: 2 * time.Minute, appPort: held})
	if err != nil {
		t.Fatalf("demo with port %d held: %v\n%s", held, err, out.String())
	}
	converged(t, out.String())
}

// With 0.0.0.0:8080 held, as a developer's machine often has it, `phoenix
// demo` converges as before. The demo's other ports are picked by the
// kernel (the API and the load balancer on 127.0.0.1:0); the daemon's
// default listen port is held too, to show the demo does not use it.
// Holding 8080 would break the simulator tests of other packages running
// alongside, which name 8080 in their configurations, so this runs only
// when asked, alone (.ci/run does).
func TestDemoWith8080Held(t *testing.T) {
	if os.Getenv("PHOENIX_HOLD_8080") == "" {
		t.Skip("holds 0.0.0.0:8080; set PHOENIX_HOLD_8080=1 and run it alone")
	}
	holdPort(t, "0.0.0.0:8080")
	_, listen, _ := net.SplitHostPort(config.DefaultListen)
	holdPort(t, "0.0.0.0:"+listen)
	out, code := run(t, "demo")
	if code != cli.ExitOK {
		t.Fatalf("demo exit %d with 0.0.0.0:8080 held:\n%s", code, out)
	}
	converged(t, out)
}

// `phoenix sim` says which port the applications answer on, and refuses
// at once a --health-port another program holds.
func TestSimSaysItsHealthPort(t *testing.T) {
	held := holdPort(t, "0.0.0.0:0")
	clouds := filepath.Join(t.TempDir(), "clouds.yaml")
	f := &simFlags{listen: "127.0.0.1:0", cloudsOut: clouds, cloud: demoCloud, bootTime: time.Millisecond, quota: -1, appPort: held}
	err := runSim(context.Background(), io.Discard, f)
	if want := fmt.Sprintf("port %d is in use on every loopback address", held); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("sim --health-port %d with the port held: %v, want an error saying %q", held, err, want)
	}

	f.appPort = 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runSim(ctx, w, f)
		_ = w.Close()
	}()
	var said []string
	for sc := bufio.NewScanner(r); sc.Scan(); {
		said = append(said, sc.Text())
		if strings.HasPrefix(sc.Text(), "Interrupt") {
			cancel()
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(said, func(l string) bool {
		return regexp.MustCompile(`^servers' applications answer on port \d+ of their addresses`).MatchString(l)
	}) {
		t.Errorf("sim does not say the applications' port:\n%s", strings.Join(said, "\n"))
	}
}
