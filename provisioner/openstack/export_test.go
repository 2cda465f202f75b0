package openstack

// ForgetLists drops what the last lists decoded, as if every server had
// changed since.
func (c *Cloud) ForgetLists() {
	c.listedMu.Lock()
	c.listed = nil
	c.listedMu.Unlock()
}
