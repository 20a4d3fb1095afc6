package collective

import (
	"strings"
	"testing"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDetectLaunch(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want Launch
	}{
		{"nothing", nil, Launch{Launcher: LaunchSingle, Size: 1}},
		{"openmpi", map[string]string{"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "1"},
			Launch{Launcher: LaunchOpenMPI, Rank: 1, Size: 4, LocalRank: 1}},
		{"openmpi over a torchrun shell", map[string]string{"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "0", "RANK": "5", "WORLD_SIZE": "8"},
			Launch{Launcher: LaunchOpenMPI, Rank: 0, Size: 2, LocalRank: 0}},
		{"hydra", map[string]string{"PMI_RANK": "3", "PMI_SIZE": "4", "MPI_LOCALRANKID": "1"},
			Launch{Launcher: LaunchPMI, Rank: 3, Size: 4, LocalRank: 1}},
		{"pmi without a local rank", map[string]string{"PMI_RANK": "3", "PMI_SIZE": "4"},
			Launch{Launcher: LaunchPMI, Rank: 3, Size: 4, LocalRank: -1}},
		{"srun", map[string]string{"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8"},
			Launch{Launcher: LaunchSlurm, Rank: 5, Size: 8, LocalRank: 1}},
		{"srun with a rendezvous", map[string]string{"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "0", "MASTER_ADDR": "node1", "MASTER_PORT": "29500"},
			Launch{Launcher: LaunchSlurm, Rank: 0, Size: 8, LocalRank: 0, MasterAddr: "node1", MasterPort: 29500}},
		{"the batch script itself", map[string]string{"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_LOCALID": "0"},
			Launch{Launcher: LaunchSingle, Size: 1}},
		{"torchrun", map[string]string{"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "0", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"},
			Launch{Launcher: LaunchTorchrun, Rank: 2, Size: 4, LocalRank: 0, MasterAddr: "10.0.0.1", MasterPort: 29500}},
		{"torchrun of one", map[string]string{"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"},
			Launch{Launcher: LaunchSingle, Size: 1}},
		{"mpirun -np 1", map[string]string{"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_LOCAL_RANK": "0"},
			Launch{Launcher: LaunchSingle, Size: 1}},
	}
	for _, c := range cases {
		got, err := DetectLaunch(envOf(c.env))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestDetectLaunchErrors(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want string // in the message: the variable at fault
	}{
		{map[string]string{"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK=2 is not in 0..1"},
		{map[string]string{"RANK": "x", "WORLD_SIZE": "2"}, `RANK="x" is not an integer`},
		{map[string]string{"RANK": "0"}, "WORLD_SIZE is not set"},
		{map[string]string{"RANK": "0", "WORLD_SIZE": "0"}, "WORLD_SIZE=0"},
		{map[string]string{"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "LOCAL_RANK is not set"},
		{map[string]string{"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "MASTER_ADDR and MASTER_PORT"},
		{map[string]string{"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "99999"}, `MASTER_PORT="99999" is not a TCP port`},
		{map[string]string{"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "-1"}, "OMPI_COMM_WORLD_LOCAL_RANK=-1"},
		{map[string]string{"PMI_RANK": "0"}, "PMI_SIZE is not set"},
	}
	for _, c := range cases {
		_, err := DetectLaunch(envOf(c.env))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want an error containing %q", c.env, err, c.want)
		}
	}
}

func TestSingleProcess(t *testing.T) {
	c, err := Open(EngineMPI, Options{Launch: &Launch{Launcher: LaunchSingle, Size: 1}, MPILibrary: "/nonexistent/libmpi.so"})
	if err != nil {
		t.Fatal(err) // a single process loads nothing
	}
	x := []float32{1, 2, 3}
	if err := c.AllReduceSum(Host(x)); err != nil || x[0] != 1 || x[2] != 3 {
		t.Fatalf("all-reduce over one rank: %v, %v", x, err)
	}
	if err := c.Broadcast(Device(0x1000, 3, 0)); err != nil {
		t.Fatal(err)
	}
	if c.Engine() != EngineNone || c.Size() != 1 || c.Rank() != 0 || c.Barrier() != nil || c.Close() != nil {
		t.Fatalf("single engine: %s rank %d of %d", c.Engine(), c.Rank(), c.Size())
	}
}

func TestMissingLibrary(t *testing.T) {
	two := &Launch{Launcher: LaunchOpenMPI, Rank: 0, Size: 2, LocalRank: 0}
	_, err := Open(EngineMPI, Options{Launch: two, MPILibrary: "/nonexistent/libmpi.so.40"})
	if err == nil || !strings.Contains(err.Error(), "cannot load /nonexistent/libmpi.so.40") || !strings.Contains(err.Error(), "apt-get install openmpi-bin") {
		t.Errorf("missing libmpi: %v", err)
	}
	_, err = Open(EngineNCCL, Options{Launch: two, NCCLLibrary: "/nonexistent/libnccl.so.2"})
	if err == nil || !strings.Contains(err.Error(), "cannot load /nonexistent/libnccl.so.2") || !strings.Contains(err.Error(), "libnccl2") {
		t.Errorf("missing libnccl: %v", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("the message is not one line: %q", err)
	}
	torch := &Launch{Launcher: LaunchTorchrun, Rank: 0, Size: 2, LocalRank: 0, MasterAddr: "127.0.0.1", MasterPort: 1}
	_, err = Open(EngineMPI, Options{Launch: torch})
	if err == nil || !strings.Contains(err.Error(), "needs an MPI launcher") {
		t.Errorf("mpi under a torchrun-style launch: %v", err)
	}
}

func TestDeviceOrdinal(t *testing.T) {
	cases := []struct {
		l       Launch
		devices int
		want    int
		err     string
	}{
		{Launch{Size: 1}, 8, 0, ""},
		{Launch{Rank: 5, Size: 8, LocalRank: 1}, 4, 1, ""},
		{Launch{Rank: 5, Size: 8, LocalRank: 1}, 1, 0, ""}, // one device per task
		{Launch{Rank: 5, Size: 8, LocalRank: 5}, 4, 0, "local rank 5 but sees 4 CUDA devices"},
		{Launch{Rank: 5, Size: 8, LocalRank: -1, Launcher: LaunchPMI}, 4, 0, "set MPI_LOCALRANKID"},
		{Launch{Rank: 0, Size: 2}, 0, 0, "sees no CUDA device"},
	}
	for _, c := range cases {
		got, err := c.l.DeviceOrdinal(c.devices)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%+v on %d devices: %v, want %q", c.l, c.devices, err, c.err)
			}
		} else if err != nil || got != c.want {
			t.Errorf("%+v on %d devices: %d, %v; want %d", c.l, c.devices, got, err, c.want)
		}
	}
}
