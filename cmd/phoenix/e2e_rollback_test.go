package main

import (
	"context"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// TestEndToEndRollbackOnDevcloud: a group of two converged on image A;
// image X is published, and every server of X is made to fail its check
// once it has passed its gate (its address marked unhealthy at the
// responder as soon as the server records phoenix:ready-at). A real
// phoenix daemon with rollout.on_failure rollback counts the failures
// after the gate, rejects X and ends with the group back on A, every
// server healthy.
func TestEndToEndRollbackOnDevcloud(t *testing.T) {
	t.Parallel() // with the other scenarios: each has a group of its own
	run := startDevcloudRun(t, "e2e-rb")
	ctx, phoenix, cloud, glance, group, imageName, tag := run.ctx, run.phoenix, run.cloud, run.glance, run.group, run.image, run.tag
	cfg := run.config(t, `
    count: 2
    rollout: {max_surge: 1, min_ready: 1s, max_failures: 2, watch: 5m, on_failure: rollback}
    health:
      http: {port: 18080, path: /healthz}
      interval: 1s
      timeout: 1s
      healthy_threshold: 2
      unhealthy_threshold: 2
      grace: 0s
`)
	// The same file serves the daemon, on a port of its own.
	yaml, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	yaml = []byte(strings.Replace(string(yaml), "cloud: devcloud\n", "cloud: devcloud\ncontroller: {interval: 1m, listen: \"127.0.0.1:0\"}\n", 1))
	if err := os.WriteFile(cfg, yaml, 0o600); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	imageA := publishImage(t, ctx, glance, imageName)
	phoenix("rebuild", "--config", cfg, "--all", "--poll", "1s", "--timeout", "5m")
	first := groupServers(t, ctx, cloud, tag)
	assertGroup(t, first, 2, imageA, group)
	t.Logf("the group converged on image A %s in %v", imageA, time.Since(began).Round(time.Second))

	waitNextSecond() // Glance's created_at has second precision
	imageX := publishImage(t, ctx, glance, imageName)

	// The servers of X fail their check once they have passed their gate.
	mark := &responderMarks{}
	t.Cleanup(mark.clear)
	markCtx, stopMarking := context.WithCancel(ctx)
	marking := make(chan struct{})
	go func() {
		defer close(marking)
		for markCtx.Err() == nil {
			list, err := cloud.ListServers(markCtx, tag)
			if err == nil {
				for _, s := range list {
					if s.ImageID == imageX && s.Metadata[controller.MetaReadyAt] != "" && len(s.Addresses["phoenix-net"]) > 0 {
						mark.unhealthy(t, s.Addresses["phoenix-net"][0])
					}
				}
			}
			select {
			case <-markCtx.Done():
			case <-time.After(500 * time.Millisecond): // polling Nova, as an operator would
			}
		}
	}()
	defer func() {
		stopMarking()
		<-marking
	}()

	// The daemon starts with X the newest image: it rolls out at once.
	started := time.Now()
	d := startDaemonProc(t, run.bin, cfg, run.cloudsFile, "--poll", "1s")
	var last []provisioner.Server
	deadline := time.Now().Add(6 * time.Minute)
	for {
		st := d.status(t)
		if len(st.Groups) == 1 {
			g := st.Groups[0]
			if g.Halted != "" {
				t.Fatalf("the rollout halted instead of rolling back: %s", g.Halted)
			}
			if !g.InProgress && g.DesiredImage.ID == imageA && strings.Contains(g.RolledBack, imageX) {
				last = groupServers(t, ctx, cloud, tag)
				if len(last) == 2 && last[0].ImageID == imageA && last[1].ImageID == imageA {
					t.Logf("rolled back in %v: %s", time.Since(started).Round(time.Second), g.RolledBack)
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the group did not go back to image A within 6 minutes: status %+v", st)
		}
		time.Sleep(time.Second) // polling the daemon's status
	}
	stopMarking()
	<-marking

	assertGroup(t, last, 2, imageA, group)
	for _, s := range last {
		addr := s.Addresses["phoenix-net"][0]
		if mark.has(addr) {
			t.Errorf("server %s (%s) of image A is one the test made sick", s.Name, addr)
		}
		if !strings.HasPrefix(s.Metadata[controller.MetaRejected], imageX+"@") {
			t.Errorf("server %s records the rollback %q, want image X %s rejected", s.Name, s.Metadata[controller.MetaRejected], imageX)
		}
		resp, err := http.Get("http://" + addr + ":18080/healthz")
		if err != nil {
			t.Errorf("health of %s (%s): %v", s.Name, addr, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("health of %s (%s): HTTP %d", s.Name, addr, resp.StatusCode)
		}
	}
	t.Logf("%d server(s) of image X were made sick after their gate; %v in all", len(mark.addresses()), time.Since(began).Round(time.Second))
}

// responderMarks are the addresses a test marked unhealthy at the
// development cloud's health responder; clear unmarks them, and only them.
type responderMarks struct {
	mu     sync.Mutex
	marked map[string]bool
}

func (m *responderMarks) unhealthy(t *testing.T, addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.marked[addr] {
		return
	}
	resp, err := http.DefaultClient.Do(mustRequest(http.MethodPut, "http://127.0.0.1:18080/_responder/unhealthy/"+addr))
	if err != nil {
		t.Logf("mark %s unhealthy at the responder: %v", addr, err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Logf("mark %s unhealthy at the responder: HTTP %d", addr, resp.StatusCode)
		return
	}
	if m.marked == nil {
		m.marked = map[string]bool{}
	}
	m.marked[addr] = true
}

func (m *responderMarks) has(addr string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.marked[addr]
}

func (m *responderMarks) addresses() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for a := range m.marked {
		out = append(out, a)
	}
	return out
}

func (m *responderMarks) clear() {
	for _, a := range m.addresses() {
		if resp, err := http.DefaultClient.Do(mustRequest(http.MethodDelete, "http://127.0.0.1:18080/_responder/unhealthy/"+a)); err == nil {
			resp.Body.Close()
		}
	}
}
