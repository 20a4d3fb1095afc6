package model

import "testing"

func TestConfigString(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{Kind: "mlp", Dim: 2, Hidden: []int{256, 256}}, "mlp dim 2 hidden [256 256]"},
		{Config{Kind: "unet", Dim: 784, Classes: 10, Image: &ImageShape{1, 28, 28},
			UNet: &UNetConfig{Base: 32, Mults: []int{1, 2, 2}, ResBlocks: 1, Groups: 8}},
			"unet 1x28x28 base 32 mults [1 2 2] res-blocks 1 attention false groups 8, 10 classes + null"},
		{Config{Kind: "unet", Dim: 3}, "unet dim 3"},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.c, got, tc.want)
		}
	}
}
