//go:build fakeclock

package main

import (
	"os"
	"strings"
	"sync"
	"time"
)

// clock, in a binary built for the restart tests, runs ahead of the real
// one by the duration written in the file PHOENIX_FAKE_CLOCK names (read
// again at most every 20ms), so that a test can move a daemon's clock by
// ten minutes without waiting for them — and a restarted daemon reads the
// same clock.
func clock() func() time.Time {
	path := os.Getenv("PHOENIX_FAKE_CLOCK")
	if path == "" {
		return time.Now
	}
	var (
		mu     sync.Mutex
		offset time.Duration
		read   time.Time
	)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		if now := time.Now(); now.Sub(read) > 20*time.Millisecond {
			if b, err := os.ReadFile(path); err == nil {
				if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil {
					offset = d
				}
			}
			read = now
		}
		return time.Now().Add(offset)
	}
}
