package gpu

// The CPU backend's Memory ops.

func (c *CPU) Info() DeviceInfo {
	return DeviceInfo{Backend: "cpu", Name: cpuName(), Threads: c.threads}
}

func (c *CPU) Alloc(n int) Buffer {
	checkAlloc(n)
	return &cpuBuffer{make([]float32, n)}
}

func (c *CPU) Free(Buffer)  {}
func (c *CPU) Sync() error  { return nil }
func (c *CPU) Close() error { return nil }

func (c *CPU) Upload(dst Buffer, src []float32) {
	checkUpload(dst, src)
	copy(host(dst), src)
}

func (c *CPU) Download(dst []float32, src Buffer) {
	checkDownload(dst, src)
	copy(dst, host(src))
}

func (c *CPU) Copy(dst, src Buffer) {
	checkCopy(dst, src)
	copy(host(dst), host(src))
}

func (c *CPU) Fill(dst Buffer, v float32) {
	d := host(dst)
	for i := range d {
		d[i] = v
	}
}
