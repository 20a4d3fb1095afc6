// Package collective is fmgpu's data-parallel layer: the sum of a flat
// float32 buffer over the processes (ranks) of a run, a broadcast from
// rank 0 and a barrier, behind one small interface (Comm), so that a
// trainer does not know which engine runs under it.
//
// The engines are the libraries every cluster already has, loaded at run
// time (dlopen through purego: the binary needs neither cgo nor the
// libraries to build, start, or train on one process):
//
//   - EngineMPI: libmpi (Open MPI's libmpi.so.40, MPICH's libmpi.so.12 and
//     its ABI family: Intel MPI, MVAPICH, Cray MPICH) on host buffers, for
//     CPU clusters. Needs an MPI launcher (mpirun, mpiexec, srun).
//   - EngineNCCL: NVIDIA's libnccl.so.2 on device buffers on a CUDA stream,
//     for GPUs. Its unique id goes from rank 0 to the others over MPI under
//     an MPI launcher, else over a TCP rendezvous at MASTER_ADDR:MASTER_PORT.
//   - EngineNone: one process; every collective is the identity.
//
// The reductions are always the library's own; the rendezvous carries only
// the bootstrap bytes, and after it serves as a watchdog (a peer that dies
// is seen at once and the survivors stop with an error naming it).
//
// # Environment
//
// DetectLaunch reads, in this order (the first family present wins):
//
//	OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK
//	    set by Open MPI's mpirun/mpiexec for each rank
//	PMI_RANK, PMI_SIZE, MPI_LOCALRANKID
//	    set by MPICH's Hydra (mpiexec), Intel MPI, and srun --mpi=pmi2;
//	    without MPI_LOCALRANKID the local rank is counted from the ranks'
//	    host names
//	SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID
//	    set by srun for each task of a job step (a batch script run
//	    without srun has SLURM_PROCID but no SLURM_STEP_NUM_TASKS, and is
//	    a single process)
//	RANK, WORLD_SIZE, LOCAL_RANK
//	    torchrun's convention, or set by hand; NCCL only
//	MASTER_ADDR, MASTER_PORT
//	    rank 0's host and a free TCP port: the rendezvous of torchrun-style
//	    launches (required there), and of srun jobs that set them (the NCCL
//	    id then goes over TCP rather than MPI)
//
// and Open reads the library overrides:
//
//	FMGPU_LIBMPI   path of libmpi (default: the loader's libmpi.so,
//	               libmpi.so.40, libmpi.so.12, libmpich.so.12, the
//	               launcher's family first)
//	FMGPU_LIBNCCL  path of libnccl (default libnccl.so.2)
//
// docs/distributed.md shows how to start a run with each launcher.
package collective
