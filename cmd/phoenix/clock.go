//go:build !fakeclock

package main

import "time"

// clock is the daemon's clock: the real one. (A binary built with -tags
// fakeclock, for the restart tests only, reads a clock they move.)
func clock() func() time.Time { return time.Now }
