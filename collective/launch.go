package collective

import (
	"fmt"
	"strconv"
	"strings"
)

// Launcher names how a process was started.
type Launcher string

const (
	// LaunchSingle: none of the variables below is set; one process.
	LaunchSingle Launcher = "single"
	// LaunchOpenMPI: Open MPI's mpirun/mpiexec (OMPI_COMM_WORLD_*).
	LaunchOpenMPI Launcher = "openmpi"
	// LaunchPMI: an MPICH-family launcher (MPICH's Hydra, Intel MPI,
	// MVAPICH), or srun --mpi=pmi2 (PMI_RANK, PMI_SIZE).
	LaunchPMI Launcher = "pmi"
	// LaunchSlurm: srun (SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID).
	LaunchSlurm Launcher = "slurm"
	// LaunchTorchrun: torchrun-style variables (RANK, WORLD_SIZE,
	// LOCAL_RANK, MASTER_ADDR, MASTER_PORT) set by torchrun or by hand.
	LaunchTorchrun Launcher = "torchrun"
)

// Launch is what the environment says about this process's place in a
// distributed run. DetectLaunch reads it; the zero Rank/Size of a Launch
// built by hand means a single process.
type Launch struct {
	Launcher  Launcher
	Rank      int // 0 .. Size-1
	Size      int // number of processes (world size); 1 for a single process
	LocalRank int // index among the processes of this node (-1: unknown, asked of MPI)
	// MasterAddr and MasterPort are rank 0's host and the TCP port of the
	// rendezvous (torchrun-style launches; optional under srun).
	MasterAddr string
	MasterPort int
}

// Distributed reports whether more than one process takes part.
func (l Launch) Distributed() bool { return l.Size > 1 }

// ByMPI reports whether the launcher is one under which MPI_Init finds its
// peers (mpirun, mpiexec, srun).
func (l Launch) ByMPI() bool {
	return l.Launcher == LaunchOpenMPI || l.Launcher == LaunchPMI || l.Launcher == LaunchSlurm
}

// HasMaster reports whether MASTER_ADDR and MASTER_PORT name a rendezvous.
func (l Launch) HasMaster() bool { return l.MasterAddr != "" && l.MasterPort > 0 }

func (l Launch) String() string {
	if l.Size <= 1 {
		return "single process"
	}
	return fmt.Sprintf("rank %d of %d (local rank %d, %s launch)", l.Rank, l.Size, l.LocalRank, l.Launcher)
}

// Environment variables DetectLaunch reads, in the order it tries them
// (the first family present wins). docs/distributed.md explains each.
const (
	EnvOMPIRank      = "OMPI_COMM_WORLD_RANK"
	EnvOMPISize      = "OMPI_COMM_WORLD_SIZE"
	EnvOMPILocalRank = "OMPI_COMM_WORLD_LOCAL_RANK"
	EnvPMIRank       = "PMI_RANK"
	EnvPMISize       = "PMI_SIZE"
	EnvPMILocalRank  = "MPI_LOCALRANKID" // set by Hydra and Intel MPI
	EnvSlurmRank     = "SLURM_PROCID"
	EnvSlurmSize     = "SLURM_STEP_NUM_TASKS" // srun's step, not the batch script's SLURM_NTASKS
	EnvSlurmLocal    = "SLURM_LOCALID"
	EnvRank          = "RANK"
	EnvWorldSize     = "WORLD_SIZE"
	EnvLocalRank     = "LOCAL_RANK"
	EnvMasterAddr    = "MASTER_ADDR"
	EnvMasterPort    = "MASTER_PORT"
)

// DetectLaunch reads the launch from the environment through getenv
// (os.Getenv in programs; tests pass a map's lookup). The MPI launchers'
// variables come first, since mpirun and srun may run under a shell that
// also exports RANK or WORLD_SIZE; MASTER_ADDR and MASTER_PORT are read for
// every launcher (an srun job may name a rendezvous for NCCL instead of
// bootstrapping over MPI). A world of one process, or no variable at all,
// is a single process. A malformed or inconsistent value is an error naming
// the variable.
func DetectLaunch(getenv func(string) string) (Launch, error) {
	var l Launch
	var err error
	switch {
	case getenv(EnvOMPIRank) != "" || getenv(EnvOMPISize) != "":
		l.Launcher = LaunchOpenMPI
		err = readTriple(getenv, &l, EnvOMPIRank, EnvOMPISize, EnvOMPILocalRank, true)
	case getenv(EnvPMIRank) != "" || getenv(EnvPMISize) != "":
		l.Launcher = LaunchPMI
		err = readTriple(getenv, &l, EnvPMIRank, EnvPMISize, EnvPMILocalRank, false)
	case getenv(EnvSlurmRank) != "" && getenv(EnvSlurmSize) != "":
		// SLURM_PROCID without SLURM_STEP_NUM_TASKS is the batch script
		// itself, not a task of srun: a single process.
		l.Launcher = LaunchSlurm
		err = readTriple(getenv, &l, EnvSlurmRank, EnvSlurmSize, EnvSlurmLocal, true)
	case getenv(EnvRank) != "" || getenv(EnvWorldSize) != "":
		l.Launcher = LaunchTorchrun
		err = readTriple(getenv, &l, EnvRank, EnvWorldSize, EnvLocalRank, true)
	default:
		l.Launcher = LaunchSingle
		l.Size = 1
	}
	if err != nil {
		return Launch{}, err
	}
	if l.MasterAddr, l.MasterPort, err = readMaster(getenv); err != nil {
		return Launch{}, err
	}
	if l.Launcher == LaunchTorchrun && l.Size > 1 && !l.HasMaster() {
		return Launch{}, fmt.Errorf("collective: %s=%d but %s and %s are not both set (rank 0's host and a free TCP port for the rendezvous)",
			EnvWorldSize, l.Size, EnvMasterAddr, EnvMasterPort)
	}
	if l.Size == 1 {
		l.Launcher, l.Rank, l.LocalRank = LaunchSingle, 0, 0
	}
	return l, nil
}

// readTriple reads rank, size and local rank. A missing local rank is an
// error where the launcher always sets it (needLocal), else -1: the MPI
// engine then derives it from the host names of the ranks.
func readTriple(getenv func(string) string, l *Launch, rankVar, sizeVar, localVar string, needLocal bool) error {
	var err error
	if l.Size, err = envInt(getenv, sizeVar, true); err != nil {
		return err
	}
	if l.Size < 1 {
		return fmt.Errorf("collective: %s=%d: the world size must be at least 1", sizeVar, l.Size)
	}
	if l.Rank, err = envInt(getenv, rankVar, true); err != nil {
		return err
	}
	if l.Rank < 0 || l.Rank >= l.Size {
		return fmt.Errorf("collective: %s=%d is not in 0..%d (%s=%d)", rankVar, l.Rank, l.Size-1, sizeVar, l.Size)
	}
	l.LocalRank = -1
	if getenv(localVar) == "" {
		if needLocal && l.Size > 1 {
			return fmt.Errorf("collective: %s is not set (%s and %s are): set it to the process's index on its node", localVar, rankVar, sizeVar)
		}
		return nil
	}
	if l.LocalRank, err = envInt(getenv, localVar, true); err != nil {
		return err
	}
	if l.LocalRank < 0 || l.LocalRank >= l.Size {
		return fmt.Errorf("collective: %s=%d is not in 0..%d", localVar, l.LocalRank, l.Size-1)
	}
	return nil
}

func readMaster(getenv func(string) string) (string, int, error) {
	addr, port := strings.TrimSpace(getenv(EnvMasterAddr)), strings.TrimSpace(getenv(EnvMasterPort))
	if port == "" {
		return addr, 0, nil
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", 0, fmt.Errorf("collective: %s=%q is not a TCP port (1..65535)", EnvMasterPort, port)
	}
	return addr, p, nil
}

func envInt(getenv func(string) string, name string, required bool) (int, error) {
	s := strings.TrimSpace(getenv(name))
	if s == "" {
		if required {
			return 0, fmt.Errorf("collective: %s is not set", name)
		}
		return 0, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("collective: %s=%q is not an integer", name, s)
	}
	return v, nil
}

// DeviceOrdinal is the CUDA device this rank takes among the devices it
// sees: its local rank, one GPU per rank of the node; or 0 when it sees one
// device (srun --gpus-per-task=1 and CUDA_VISIBLE_DEVICES per rank hide the
// others).
func (l Launch) DeviceOrdinal(devices int) (int, error) {
	switch {
	case devices < 1:
		return 0, fmt.Errorf("collective: rank %d sees no CUDA device", l.Rank)
	case devices == 1 || l.Size <= 1:
		return 0, nil
	case l.LocalRank < 0:
		return 0, fmt.Errorf("collective: rank %d sees %d CUDA devices and its launcher (%s) did not say its local rank: set %s", l.Rank, devices, l.Launcher, EnvPMILocalRank)
	case l.LocalRank >= devices:
		return 0, fmt.Errorf("collective: rank %d has local rank %d but sees %d CUDA devices: start at most %d ranks per node, or one device per rank (CUDA_VISIBLE_DEVICES)",
			l.Rank, l.LocalRank, devices, devices)
	}
	return l.LocalRank, nil
}
