package fmgpu

import (
	"context"
	"errors"
	"fmt"

	"github.com/fmgpu/fmgpu/gpu"
)

// Device names accepted by OpenDevice: the values of the command line's
// --device flag.
const (
	// DeviceAuto is the GPU when the NVIDIA driver loads and a device
	// answers, else the CPU (Device.Fallback says why).
	DeviceAuto = "auto"
	// DeviceCPU is the pure-Go CPU backend.
	DeviceCPU = "cpu"
	// DeviceCUDA is the GPU, or an error naming what is missing.
	DeviceCUDA = "cuda"
)

// Device is an open backend that models and trainers run on. The CUDA
// driver is loaded at run time, so a program that imports fmgpu builds
// without cgo and without the CUDA toolkit, and runs on machines with or
// without a GPU.
//
// A Device runs one call at a time: Models and Trainers sharing it take
// turns (a call waiting for its turn stops when its context is done), so
// they may be used from several goroutines.
type Device struct {
	b        gpu.Backend
	fallback string
	turn     chan struct{}
}

// OpenDevice opens the device name asks for: DeviceAuto (or ""), DeviceCPU
// or DeviceCUDA. threads bounds the CPU backend's workers (0: all cores).
// With DeviceCUDA and no usable GPU the error is a *gpu.CUDAUnavailable
// saying what is missing.
func OpenDevice(name string, threads int) (*Device, error) {
	if threads < 0 {
		return nil, fmt.Errorf("fmgpu: %d CPU threads: need >= 0 (0: all cores)", threads)
	}
	switch name {
	case DeviceCPU:
		return NewDevice(gpu.NewCPU(threads)), nil
	case DeviceCUDA:
		b, err := gpu.NewCUDA()
		if err != nil {
			return nil, err
		}
		return NewDevice(b), nil
	case DeviceAuto, "":
		b, err := gpu.NewCUDA()
		if err == nil {
			return NewDevice(b), nil
		}
		d := NewDevice(gpu.NewCPU(threads))
		d.fallback = briefCUDAError(err)
		return d, nil
	}
	return nil, fmt.Errorf("fmgpu: device %q: want auto, cpu or cuda", name)
}

// NewDevice makes a Device of a backend the caller opened (a
// gpu.NewCUDAWith with options, or a wrapper of its own). The Device owns
// it: Close closes it.
func NewDevice(b gpu.Backend) *Device {
	return &Device{b: b, turn: make(chan struct{}, 1)}
}

// briefCUDAError is why the GPU is not used, in a few words.
func briefCUDAError(err error) string {
	var u *gpu.CUDAUnavailable
	if errors.As(err, &u) {
		return u.Brief()
	}
	return err.Error()
}

// Backend is the device's operations, for a network of one's own
// (model.Register); calls through it do not take the device's turn.
func (d *Device) Backend() gpu.Backend { return d.b }

// Info is what the backend reports about its device (zero for the zero
// Device).
func (d *Device) Info() gpu.DeviceInfo {
	if d == nil || d.b == nil {
		return gpu.DeviceInfo{}
	}
	return d.b.Info()
}

// Fallback is why DeviceAuto runs on the CPU, as in "no NVIDIA driver
// (libcuda.so.1 not found)"; empty on a GPU, or when the CPU was asked for.
func (d *Device) Fallback() string { return d.fallback }

// String describes the device in one line, as the command line's run
// header does: "cuda: NVIDIA H200, compute capability 9.0, 139.7 GiB,
// driver 12.4" or "cpu: AMD EPYC 9B45, 2 threads (no GPU: no NVIDIA
// driver (libcuda.so.1 not found))".
func (d *Device) String() string {
	if d == nil || d.b == nil {
		return "no device (a Device comes from OpenDevice or NewDevice)"
	}
	in := d.b.Info()
	s := fmt.Sprintf("%s: %s", in.Backend, in.Name)
	if in.ComputeCapability != "" {
		s += fmt.Sprintf(", compute capability %s", in.ComputeCapability)
	}
	if in.MemoryBytes > 0 {
		s += fmt.Sprintf(", %.1f GiB", float64(in.MemoryBytes)/(1<<30))
	}
	if in.Driver != "" {
		s += ", driver " + in.Driver
	}
	if in.Threads > 0 {
		s += fmt.Sprintf(", %d threads", in.Threads)
	}
	if d.fallback != "" {
		s += fmt.Sprintf(" (no GPU: %s)", d.fallback)
	}
	return s
}

// Close releases the backend. Models and Trainers on the device must be
// closed first.
func (d *Device) Close() error {
	if d == nil || d.b == nil {
		return nil // the zero Device holds nothing
	}
	return d.b.Close()
}

// errNoDevice is the zero Device's answer.
var errNoDevice = errors.New("fmgpu: the Device was not opened (a Device comes from OpenDevice or NewDevice)")

// acquire waits for the device's turn, or for ctx to be done.
func (d *Device) acquire(ctx context.Context) error {
	if d.turn == nil {
		return errNoDevice
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case d.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *Device) release() { <-d.turn }
