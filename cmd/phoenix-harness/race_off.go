//go:build !race

package main

// slowdown stretches the seeds' deadlines; 1 without the race detector.
const slowdown = 1
