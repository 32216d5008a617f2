"""Multi-host start-up: `jax.distributed.initialize()` when the process is one of several.

Recipe (README, "Multi-host"): run **the same command on every host**, e.g.

  JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=4 JAX_PROCESS_ID=<i> \
      python launch/train.py --config=configs/grpo.py:smollm2 --config.mesh.fsdp=-1

(on SLURM, Open MPI or a multi-host Cloud TPU slice the variables are read from the scheduler and
nothing needs to be set). `initialize()` runs before any other JAX call in the launcher; after it,
`jax.devices()` lists the devices of every host and the rest of the code is unchanged: the mesh
spans all hosts, and each host feeds its slice of the batch.
"""
import logging
import os
from collections.abc import Mapping

import jax

_initialized = False


def multihost_reason(environ: Mapping[str, str] | None = None) -> str | None:
  """Why this process looks like one of several (the variable that says so), or None.

  Checked: `JAX_COORDINATOR_ADDRESS` (explicit), SLURM with more than one task, Open MPI with more
  than one rank, a Cloud TPU slice with more than one worker host.
  """
  env = os.environ if environ is None else environ
  if env.get("JAX_COORDINATOR_ADDRESS"):
    return "JAX_COORDINATOR_ADDRESS is set"
  if "SLURM_JOB_ID" in env and int(env.get("SLURM_NTASKS", "1") or 1) > 1:
    return f"SLURM job with SLURM_NTASKS={env['SLURM_NTASKS']}"
  if int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
    return f"Open MPI with OMPI_COMM_WORLD_SIZE={env['OMPI_COMM_WORLD_SIZE']}"
  hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
  if len(hosts) > 1:
    return f"Cloud TPU slice with {len(hosts)} worker hosts"
  return None


def initialize(environ: Mapping[str, str] | None = None) -> bool:
  """Calls `jax.distributed.initialize()` once if `multihost_reason` finds several processes.

  Returns True when this process is (now) part of a multi-process run. Call it before anything
  else touches JAX devices. Single-host runs are left alone (no coordinator, no extra start-up).
  """
  global _initialized
  if _initialized:
    return True
  reason = multihost_reason(environ)
  if reason is None:
    return False
  logging.info("multi-host run (%s): calling jax.distributed.initialize()", reason)
  jax.distributed.initialize()
  _initialized = True
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  return True
