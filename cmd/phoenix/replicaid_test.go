package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestReplicaID(t *testing.T) {
	if id := defaultReplicaID(); !strings.HasSuffix(id, "-"+strconv.Itoa(os.Getpid())) || checkReplicaID(id) != nil {
		t.Errorf("default replica id %q: want host-pid, accepted", id)
	}
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"r1", true},
		{"phoenix-a.prod-1234", true},
		{"", false},
		{"a/b", false}, // a segment of an etcd key
		{"a b", false}, // one token of a User-Agent
		{`a"b`, false}, // quoted in messages
		{strings.Repeat("x", 129), false},
	} {
		if err := checkReplicaID(tc.id); (err == nil) != tc.ok {
			t.Errorf("checkReplicaID(%q) = %v, want ok %v", tc.id, err, tc.ok)
		}
	}
}
