package gpu

// Placeholders until the image ops land (issue 7 work in progress).

func (cpu *CPU) Conv2D(s ConvShape, x, w, bias, y Buffer) { panic("gpu: Conv2D not implemented yet") }

func (cpu *CPU) Conv2DBackwardData(s ConvShape, dy, w, dx Buffer) {
	panic("gpu: Conv2DBackwardData not implemented yet")
}

func (cpu *CPU) Conv2DBackwardFilter(s ConvShape, x, dy, dw, dbias Buffer) {
	panic("gpu: Conv2DBackwardFilter not implemented yet")
}

func (cpu *CPU) GroupNorm(s GroupNormShape, x, gamma, beta, y, mean, rstd Buffer) {
	panic("gpu: GroupNorm not implemented yet")
}

func (cpu *CPU) GroupNormBackward(s GroupNormShape, dy, x, gamma, mean, rstd, dx, dgamma, dbeta Buffer) {
	panic("gpu: GroupNormBackward not implemented yet")
}

func (cpu *CPU) Activate(act Act, x, y Buffer) { panic("gpu: Activate not implemented yet") }

func (cpu *CPU) AddChannelBias(batch, c, hw int, x, bias, y Buffer) {
	panic("gpu: AddChannelBias not implemented yet")
}

func (cpu *CPU) ChannelSum(batch, c, hw int, x, out Buffer) {
	panic("gpu: ChannelSum not implemented yet")
}

func (cpu *CPU) Upsample2x(batch, c, h, w int, x, y Buffer) {
	panic("gpu: Upsample2x not implemented yet")
}

func (cpu *CPU) Upsample2xBackward(batch, c, h, w int, dy, dx Buffer) {
	panic("gpu: Upsample2xBackward not implemented yet")
}

func (cpu *CPU) CopyChannels(batch, hw, n int, src Buffer, srcC, srcOff int, dst Buffer, dstC, dstOff int) {
	panic("gpu: CopyChannels not implemented yet")
}

func (cpu *CPU) GemmBatched(transA, transB bool, batch, m, n, k int, alpha float32, a Buffer, lda, strideA int, b Buffer, ldb, strideB int, beta float32, c Buffer, ldc, strideC int) {
	panic("gpu: GemmBatched not implemented yet")
}

func (cpu *CPU) Softmax(rows, cols int, x, y Buffer) { panic("gpu: Softmax not implemented yet") }

func (cpu *CPU) SoftmaxBackward(rows, cols int, y, dy, dx Buffer) {
	panic("gpu: SoftmaxBackward not implemented yet")
}

func (cpu *CPU) Transpose(batch, rows, cols int, x, y Buffer) {
	panic("gpu: Transpose not implemented yet")
}

func (cpu *CPU) OneHot(rows, classes int, labels, out Buffer) { panic("gpu: OneHot not implemented yet") }

func (cpu *CPU) DrawLabels(dr BatchDraw, labels Buffer, nData, rows int, dropout, null float32, y Buffer) {
	panic("gpu: DrawLabels not implemented yet")
}
