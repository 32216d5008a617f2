"""Host-process start-up: glibc malloc set for the large, short-lived buffers XLA:CPU allocates.

XLA:CPU takes each executable's temporaries from glibc `malloc`. By default glibc serves every
block of 32 MiB or more with a fresh anonymous `mmap` and unmaps it again on `free`, so each call
faults its temporaries in page by page, and the kernel zeroes every page again. A SmolLM2-135M
train step at 32 rows x 160 positions (remat "dots", 4 micro-batches) asks for 2.2 GB: ~546k
minor faults of 4 KiB per step (`getrusage`). On a VM that hands freed memory back to its host
(virtio-balloon free-page reporting, as on this project's 2-core machines) it is worse: inside the
RL loop, where 4 s of sampling separate two steps, the freed pages are gone by the next step and
the step's first writes ran at ~1 GB/s; the step took 14.8 s there against 12.7 s back to back.

`tune_malloc()` sets four glibc tunables (each only where the user has not set it):
- `glibc.malloc.mmap_max=0`, `glibc.malloc.arena_max=1`, `glibc.malloc.trim_threshold=2**40`:
  large blocks come from the one heap and stay in the process after `free`, so the next step
  reuses pages that are already mapped (no faults, no zeroing). The price: the process keeps its
  peak heap until it exits (peak RSS 5.3 vs 5.4 GB untuned on the RL benchmark, but 7.4 vs 5.5 GB
  on the default run below).
- `glibc.malloc.hugetlb=1` where the kernel's THP mode is `madvise`: the heap is advised onto
  2 MiB pages (~512x fewer faults and TLB misses when it grows).
Measured in `benchmarks/rl_iteration.py` (same process for both sides, so both get it): our train
phase 14.9 -> 12.4 s, TRL's 41.9 -> 27.6 s (torch's CPU tensors come from the same malloc); since
the trainer runs each group's prompt once (1.66 GB of step temporaries), ours 6.8 -> 6.4 s. But
on the default run (`python launch/train.py`, 6 iterations of 64 rows, 2 evals) it changed nothing
(train phase 21-23 s per iteration either way) and raised the peak RSS from 5.5 to 7.4 GB, so it
is opt-in: `JAXRL_LLM_TUNE_MALLOC=1`.

Tunables are read once when the process starts, so `tune_malloc()` re-executes the running
program (same interpreter, same arguments, same PID: `os.execve`) with them added to
`GLIBC_TUNABLES`. The launchers and benchmarks call it first thing; it does something only with
`JAXRL_LLM_TUNE_MALLOC=1`. Library code never calls it: a program that imports jaxrl_llm keeps its
process.
"""
import os
import sys
from collections.abc import Mapping

ENABLE = "JAXRL_LLM_TUNE_MALLOC"      # "1": re-execute with the tunables (opt-in)
THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"
HUGE_PAGES = "glibc.malloc.hugetlb"
MIN_GLIBC = (2, 35)                   # first glibc with glibc.malloc.hugetlb
RETAIN = {"glibc.malloc.mmap_max": "0", "glibc.malloc.arena_max": "1",
          "glibc.malloc.trim_threshold": str(2**40)}
MARKER = "JAXRL_LLM_MALLOC_TUNED"     # set in the re-executed process (no second re-exec)


def thp_mode(path: str = THP_MODE_FILE) -> str | None:
  """The kernel's transparent-huge-page mode ('always', 'madvise' or 'never'; the bracketed word
  of `path`), or None where the file does not exist (not Linux, THP compiled out)."""
  try:
    with open(path, encoding="ascii") as f:
      text = f.read()
  except OSError:
    return None
  start, end = text.find("["), text.find("]")
  return text[start + 1:end] if 0 <= start < end else None


def glibc_version() -> tuple[int, int] | None:
  """(major, minor) of the C library this interpreter runs on when it is glibc, else None."""
  try:
    name = os.confstr("CS_GNU_LIBC_VERSION") or ""
  except (AttributeError, ValueError, OSError):
    return None
  parts = name.split()
  if len(parts) != 2 or parts[0] != "glibc":
    return None
  try:
    major, minor = (int(x) for x in parts[1].split(".")[:2])
  except ValueError:
    return None
  return major, minor


def malloc_environ(environ: Mapping[str, str], *, mode: str | None,
                   glibc: tuple[int, int] | None) -> dict[str, str] | None:
  """The environment to re-execute with (`environ` plus the tunables above in `GLIBC_TUNABLES`,
  and `MARKER`), or None where it is not asked for (`JAXRL_LLM_TUNE_MALLOC` is not "1") or
  would change nothing: already re-executed, not glibc >= 2.35, or every tunable already set by
  the user. `hugetlb` is added only when `mode` (the THP mode) is 'madvise'."""
  if environ.get(ENABLE) != "1" or MARKER in environ:
    return None
  if glibc is None or glibc < MIN_GLIBC:
    return None
  tunables = [t for t in environ.get("GLIBC_TUNABLES", "").split(":") if t]
  own = {t.split("=")[0] for t in tunables}
  wanted = dict(RETAIN, **({HUGE_PAGES: "1"} if mode == "madvise" else {}))
  added = [f"{k}={v}" for k, v in wanted.items() if k not in own]
  if not added:
    return None
  return {**environ, "GLIBC_TUNABLES": ":".join(tunables + added), MARKER: "1"}


def tune_malloc() -> bool:
  """Re-executes this program with the malloc tunables when `malloc_environ` says it helps.

  Call it before anything else happens in the process (it does not return when it re-executes;
  output buffered so far is flushed first). Returns True in a process that runs tuned (the
  re-executed one), False when nothing was done.
  """
  if MARKER in os.environ:
    return True
  env = malloc_environ(os.environ, mode=thp_mode(), glibc=glibc_version())
  if env is None:
    return False
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
  return True  # not reached
