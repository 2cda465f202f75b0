package trigger

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// MinSecret is the shortest webhook secret accepted, in bytes: 32 is
// what `openssl rand -hex 16` prints, and as many bytes as the HMAC-SHA256
// output, so the key is never the weak part.
const MinSecret = 32

// maxSecretFile bounds what ReadSecret reads: a secret is a few dozen
// bytes, and a path pointing at something large is a mistake.
const maxSecretFile = 64 << 10

// ReadSecret reads a webhook secret file: trimmed of surrounding
// whitespace; an empty file, a secret shorter than MinSecret, a
// directory, or an unreadable file is an error naming the path (never the
// content). If the file is readable by group or
// others (mode & 0o077 != 0) it is still accepted but the returned warning
// string says so (the caller logs it).
//
// Only regular files are read (symbolic links are followed, as in a
// Kubernetes secret volume): opening a FIFO would block forever.
func ReadSecret(path string) (secret []byte, warning string, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, "", fmt.Errorf("webhook secret: %w", err)
	}
	switch {
	case fi.IsDir():
		return nil, "", fmt.Errorf("webhook secret %s: is a directory, expected a file", path)
	case !fi.Mode().IsRegular():
		return nil, "", fmt.Errorf("webhook secret %s: not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("webhook secret: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, "", fmt.Errorf("webhook secret: %w", err)
	}
	if len(raw) > maxSecretFile {
		return nil, "", fmt.Errorf("webhook secret %s: larger than %d bytes; is it the right file?", path, maxSecretFile)
	}
	secret = bytes.TrimSpace(raw)
	if len(secret) == 0 {
		return nil, "", fmt.Errorf("webhook secret %s: the file is empty", path)
	}
	if len(secret) < MinSecret {
		return nil, "", fmt.Errorf("webhook secret %s: %d bytes, expected at least %d (make one with: openssl rand -hex 32)", path, len(secret), MinSecret)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		warning = fmt.Sprintf("webhook secret %s is readable by group or others (mode %04o); chmod 600 it", path, perm)
	}
	return secret, warning, nil
}
