//go:build race

package main

// slowdown stretches the seeds' deadlines in a build with the race
// detector, which runs everything several times slower: a new server must
// still have time to pass its check within progress_deadline.
const slowdown = 3
