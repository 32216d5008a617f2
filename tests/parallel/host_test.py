"""parallel.host: when the launchers re-execute with malloc tuned, and that the tuning holds."""
import os
import subprocess
import sys
import textwrap

import pytest

from jaxrl_llm.parallel import host

GLIBC = (2, 36)
TUNED = ("glibc.malloc.mmap_max=0:glibc.malloc.arena_max=1"
         ":glibc.malloc.trim_threshold=1099511627776:glibc.malloc.hugetlb=1")


def test_thp_mode_reads_the_bracketed_word(tmp_path):
  path = tmp_path / "enabled"
  path.write_text("always [madvise] never\n")
  assert host.thp_mode(str(path)) == "madvise"
  path.write_text("[always] madvise never\n")
  assert host.thp_mode(str(path)) == "always"
  assert host.thp_mode(str(tmp_path / "missing")) is None


ON = {"JAXRL_LLM_TUNE_MALLOC": "1"}


def test_environ_adds_the_tunables_and_keeps_the_rest():
  env = host.malloc_environ({"PATH": "/bin", **ON}, mode="madvise", glibc=GLIBC)
  assert env == {"PATH": "/bin", **ON, "GLIBC_TUNABLES": TUNED, host.MARKER: "1"}
  # no huge pages to advise where THP is 'always' (already) or 'never' (none to be had)
  for mode in ("always", "never", None):
    env = host.malloc_environ(ON, mode=mode, glibc=GLIBC)
    assert env["GLIBC_TUNABLES"] == TUNED.rsplit(":", 1)[0]
  # the user's own values stay and win
  env = host.malloc_environ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4:glibc.rtld.x=1", **ON},
                            mode="madvise", glibc=GLIBC)
  assert env["GLIBC_TUNABLES"] == ("glibc.malloc.arena_max=4:glibc.rtld.x=1:glibc.malloc.mmap_max=0"
                                   ":glibc.malloc.trim_threshold=1099511627776"
                                   ":glibc.malloc.hugetlb=1")


@pytest.mark.parametrize("environ,glibc", [
    ({}, GLIBC),                                                  # not asked for (opt-in)
    ({"JAXRL_LLM_TUNE_MALLOC": "0"}, GLIBC),                      # turned off
    ({**ON, host.MARKER: "1"}, GLIBC),                            # already re-executed
    ({**ON, "GLIBC_TUNABLES": TUNED}, GLIBC),                     # the user set them all
    (ON, (2, 34)),                                                # glibc without hugetlb
    (ON, None),                                                   # musl, macOS
])
def test_environ_is_none_where_reexecuting_changes_nothing(environ, glibc):
  assert host.malloc_environ(environ, mode="madvise", glibc=glibc) is None


_CHILD = textwrap.dedent("""
    import ctypes, os, resource, sys
    print("start", os.getpid(), os.environ.get("GLIBC_TUNABLES"), sys.argv[1:], flush=True)
    from jaxrl_llm.parallel import host
    print("tuned", host.tune_malloc(), flush=True)
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    size = 256 << 20                      # above glibc's 32 MiB mmap ceiling
    for i in range(2):                    # a step's temporaries: allocated, written, freed
      before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
      block = libc.malloc(size)
      ctypes.memset(block, 1, size)
      libc.free(block)
      print("faults", i, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, flush=True)
""")
PAGES = (256 << 20) // 4096


def _faults(out: str) -> list[int]:
  return [int(line.split()[2]) for line in out.splitlines() if line.startswith("faults")]


@pytest.mark.skipif(host.malloc_environ(ON, mode=None, glibc=host.glibc_version()) is None,
                    reason="this machine's C library is not glibc >= 2.35")
def test_reexecutes_once_with_the_same_pid_and_arguments_and_reuses_freed_memory():
  env = {k: v for k, v in os.environ.items()
         if k not in ("GLIBC_TUNABLES", host.ENABLE, host.MARKER)}
  out = subprocess.run([sys.executable, "-c", _CHILD, "--flag", "x"], env={**env, **ON}, check=True,
                       capture_output=True, text=True, timeout=120).stdout
  starts = [line.split(" ", 2) for line in out.splitlines() if line.startswith("start")]
  assert len(starts) == 2                                    # the original and one re-execution
  assert starts[0][1] == starts[1][1]                        # execve: the same process
  assert starts[0][2] == "None ['--flag', 'x']"
  assert starts[1][2].startswith("glibc.malloc.mmap_max=0:") and starts[1][2].endswith("'x']")
  assert out.count("tuned True") == 1
  first, second = _faults(out)
  assert second < PAGES // 100, out                          # the freed block came back mapped
  if host.thp_mode() == "madvise":
    assert first < PAGES // 8, out                           # 2 MiB pages: 128, not 65536

  off = subprocess.run([sys.executable, "-c", _CHILD], env=env,            # the default: off
                       check=True, capture_output=True, text=True, timeout=120).stdout
  assert off.count("start") == 1 and "tuned False" in off
  assert min(_faults(off)) >= PAGES // 2, off                # untuned: every page, every time
