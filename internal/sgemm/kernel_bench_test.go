package sgemm

import (
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkMicroKernel times the full-size micro-kernel alone on one core,
// with its operands in cache: the ceiling for the blocked driver.
func BenchmarkMicroKernel(b *testing.B) {
	defer SetKernel("")
	for _, name := range Kernels() {
		for _, variant := range []string{"rowA", "colA"} {
			b.Run("kernel="+name+"/"+variant, func(b *testing.B) {
				SetKernel(name)
				K := current.Load()
				const kc = 256
				r := rand.New(rand.NewPCG(1, 2))
				a := randSlice(r, K.mr*kc)
				bb := randSlice(r, kc*K.nr*8)
				c := make([]float32, K.mr*K.nr)
				kern, sa := K.rowA[K.mr-1], 4*kc
				if variant == "colA" {
					kern, sa = K.colA[K.mr-1], 4*K.mr
				}
				b.ResetTimer()
				start, cpu0 := time.Now(), cpuTime()
				for i := 0; i < b.N; i++ {
					q := i % 8
					kern(kc, &a[0], sa, &bb[q*kc*K.nr], 4*K.nr, &c[0], 4*K.nr, 1, 1)
				}
				reportGFLOPS(b, benchShape{m: K.mr, n: K.nr, k: kc}, time.Since(start), cpuTime()-cpu0)
			})
		}
	}
}
