package model

import (
	"errors"

	"github.com/fmgpu/fmgpu/gpu"
)

// Placeholders until the U-Net lands (issue 7 work in progress).

var errNoUNet = errors.New("the unet model is not implemented yet")

func validateUNet(c Config) error                      { return errNoUNet }
func unetTensorLayout(c Config) ([]Tensor, int, error) { return nil, 0, errNoUNet }
func newUNet(b gpu.Backend, c Config) (Net, error)     { return nil, errNoUNet }
