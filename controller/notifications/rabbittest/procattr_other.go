//go:build !linux

package rabbittest

import "syscall"

// sysProcAttr: only Linux can tie the child's life to the test binary's.
func sysProcAttr() *syscall.SysProcAttr { return nil }
