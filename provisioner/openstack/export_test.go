package openstack

// ForgetLists drops what the last lists decoded, as if every server had
// changed since.
func (c *Cloud) ForgetLists() {
	c.listedMu.Lock()
	c.listed = nil
	c.listedMu.Unlock()
}

// IsolateEnv clears the machine's OS_* variables for a test, then sets env.
var IsolateEnv = isolateEnv
