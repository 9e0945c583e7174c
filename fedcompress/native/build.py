"""Compiles src/fc_ops.cc twice, for Python and for TFF's worker_binary, into a cache.

Both builds need only a C++ compiler and the TensorFlow wheel's headers; each build is
keyed by the sources, TensorFlow's version and flags, the compiler and the worker's
build ID, and made once per machine (under a file lock: pytest-xdist's processes may
ask at once). The worker build:

1. compiles fc_ops.cc to an object, without linking TensorFlow;
2. for each TensorFlow function the object calls, finds the worker's own copy in its
   symbol table (the wheel's headers are TensorFlow 2.14.1 with Abseil lts_20230125; the
   worker is TensorFlow 2.14.0 built with Abseil lts_20230802, whose inline namespace
   is renamed in the names, the types being the same);
3. writes one trampoline per function, an indirect jump through a slot that
   worker_hook.c fills with the worker's load address plus the offset;
4. links object, trampolines and hook with every symbol resolved (`-z defs`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile

from fedcompress.native import elf

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
_SOURCES = ("fc_ops.cc", "worker_hook.c")
# Mangled names of the namespaces whose functions the worker build takes from the worker.
_WORKER_NAMESPACES = re.compile(r"^_ZNK?(10tensorflow|3tsl|4absl|3xla)")
_ABSL_TAG = re.compile(r"4absl12lts_(\d{8})")
_COMPILE_TIMEOUT_S = 600


class BuildError(RuntimeError):
  """The native ops could not be built here (no compiler, a failed compile, ...)."""


@dataclasses.dataclass(frozen=True)
class Libraries:
  python: str  # for tf.load_op_library
  worker: str  # for LD_PRELOAD into the worker_binary


def worker_binary_path() -> str:
  """Path of the C++ `worker_binary` shipped inside the TFF wheel (TFF is not imported)."""
  spec = importlib.util.find_spec("tensorflow_federated")
  locations = list(spec.submodule_search_locations or []) if spec is not None else []
  path = os.path.join(locations[0] if locations else "", "data", "worker_binary")
  if not os.path.isfile(path):
    raise RuntimeError(f"TFF's worker_binary is missing at {path}; reinstall tensorflow-federated.")
  return path


def cache_root() -> str:
  root = os.environ.get("FEDCOMPRESS_NATIVE_CACHE")
  if root:
    return root
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "fedcompress", "native")


def _compilers() -> tuple[list[str], list[str]]:
  """The C++ and C compiler commands (`CXX`, `CC`: a program, with arguments if any)."""
  commands = []
  for variable, default in (("CXX", "g++"), ("CC", "gcc")):
    command = shlex.split(os.environ.get(variable, default))
    if not command or shutil.which(command[0]) is None:
      raise BuildError(f"no C/C++ compiler: {variable}={' '.join(command)!r} is not on PATH")
    commands.append(command)
  return commands[0], commands[1]


def _tf_flags() -> tuple[list[str], list[str], str]:
  import tensorflow as tf  # Deferred: nothing at import.
  return (list(tf.sysconfig.get_compile_flags()), list(tf.sysconfig.get_link_flags()),
          tf.__version__)


def _key(worker_build_id: str, cxx: list[str], cc: list[str], compile_flags: list[str],
         tf_version: str) -> str:
  digest = hashlib.sha256()
  # Every file of the build (the sources, this recipe, the symbol reader).
  here = os.path.dirname(os.path.abspath(__file__))
  for path in sorted([*(os.path.join(_SRC, name) for name in _SOURCES),
                      os.path.join(here, "build.py"), os.path.join(here, "elf.py")]):
    with open(path, "rb") as f:
      digest.update(f.read() + b"\0")
  for text in (worker_build_id, *cxx, *cc, tf_version, *compile_flags,
               _version_line(cxx), _version_line(cc)):
    digest.update(text.encode() + b"\0")
  return digest.hexdigest()[:20]


def _version_line(command: list[str]) -> str:
  out = subprocess.run([*command, "--version"], capture_output=True, text=True, check=False)
  return out.stdout.splitlines()[0] if out.stdout else " ".join(command)


def _interrupted(returncode: int) -> None:
  # A compiler stopped by Ctrl-C (which reaches the whole process group): the build
  # did not fail, it was interrupted.
  if returncode == -signal.SIGINT:
    raise KeyboardInterrupt


def _run(args: list[str]) -> None:
  done = subprocess.run(args, capture_output=True, text=True, timeout=_COMPILE_TIMEOUT_S,
                        check=False)
  _interrupted(done.returncode)
  if done.returncode != 0:
    lines = (done.stderr or done.stdout).strip().splitlines()
    raise BuildError(f"{' '.join(args[:2])} ... failed: " + "\n".join(lines[-15:]))


def _trampolines(worker_object: str, worker_binary: str) -> str:
  """Assembly for the object's calls into TensorFlow, aimed at the worker's functions."""
  with elf.ElfFile(worker_object) as obj:
    wanted = sorted(s.name for s in obj.symbols().values()
                    if not s.defined and _WORKER_NAMESPACES.match(s.name))
  with elf.ElfFile(worker_binary) as binary:
    table = binary.symbols()
  worker_tags = {m.group(1) for name in table if name.startswith("_ZN4absl12lts_")
                 for m in [_ABSL_TAG.match(name, 3)] if m}
  lines = [".text"]
  offsets, missing = [], []
  for name in wanted:
    candidates = [name] + [_ABSL_TAG.sub(f"4absl12lts_{tag}", name) for tag in sorted(worker_tags)]
    symbol = next((table[c] for c in candidates if c in table and table[c].defined), None)
    if symbol is None or not symbol.is_function:
      missing.append(name)
      continue
    offsets.append(symbol.value)
    lines += [f".globl {name}", f".hidden {name}", f".type {name},@function", f"{name}:",
              f"  jmp *fedcompress_slots+{8 * (len(offsets) - 1)}(%rip)"]
  if missing:
    raise BuildError(f"{worker_binary} has no function for {len(missing)} of the kernels' "
                     f"calls, e.g. {missing[0]}")
  lines += [".section .rodata", ".globl fedcompress_offsets", ".hidden fedcompress_offsets",
            ".balign 8", "fedcompress_offsets:"] + [f"  .quad {o}" for o in offsets] + [
            ".globl fedcompress_num_slots", ".hidden fedcompress_num_slots",
            "fedcompress_num_slots:", f"  .quad {len(offsets)}",
            ".bss", ".globl fedcompress_slots", ".hidden fedcompress_slots", ".balign 8",
            "fedcompress_slots:", f"  .zero {8 * max(1, len(offsets))}",
            '.section .note.GNU-stack,"",@progbits']
  return "\n".join(lines) + "\n"


def _compile_into(out_dir: str, worker_binary: str, build_id: str, cxx: list[str],
                  cc: list[str], compile_flags: list[str], link_flags: list[str]) -> None:
  source = os.path.join(_SRC, "fc_ops.cc")
  # -O3: GCC vectorizes loops such as the level search's compares only from -O3.
  common = ["-O3", "-fPIC", *compile_flags]
  python_so = os.path.join(out_dir, "fc_ops_python.so")
  worker_o = os.path.join(out_dir, "fc_ops_worker.o")
  # The two compiles of the large TensorFlow headers (~4 s each) run side by side.
  jobs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
          for args in ([*cxx, "-shared", *common, "-DFEDCOMPRESS_FOR_PYTHON", source, "-o",
                        python_so, *link_flags],
                       [*cxx, "-c", *common, "-fno-rtti", source, "-o", worker_o])]
  failures = []
  for job in jobs:
    output, _ = job.communicate(timeout=_COMPILE_TIMEOUT_S)
    _interrupted(job.returncode)
    if job.returncode != 0:
      failures.append(f"{' '.join(job.args[:2])} ... failed: "
                      + "\n".join(output.strip().splitlines()[-15:]))
  if failures:
    raise BuildError("\n".join(failures))
  asm = os.path.join(out_dir, "trampolines.S")
  try:
    text = _trampolines(worker_o, worker_binary)
  except elf.ElfError as e:  # E.g. a stripped worker_binary: no symbol table.
    raise BuildError(str(e)) from None
  with open(asm, "w") as f:
    f.write(text)
  hook_o = os.path.join(out_dir, "worker_hook.o")
  _run([*cc, "-c", "-O2", "-fPIC", f'-DFC_BUILD_ID="{build_id}"',
        os.path.join(_SRC, "worker_hook.c"), "-o", hook_o])
  tramp_o = os.path.join(out_dir, "trampolines.o")
  _run([*cc, "-c", asm, "-o", tramp_o])
  _run([*cxx, "-shared", "-Wl,-z,defs", worker_o, tramp_o, hook_o, "-o",
        os.path.join(out_dir, "fc_ops_worker.so"), "-ldl"])


@contextlib.contextmanager
def _locked(path: str):
  with open(path, "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def _preloads(library: str) -> bool:
  """Whether the dynamic loader preloads `library` and runs its hook: in `true`, which is
  not the worker, the hook says so (and registers nothing). A damaged library is
  skipped by the loader with a warning, and a worker would run without the kernels."""
  program = shutil.which("true") or "/bin/true"
  done = subprocess.run([program], env={**os.environ, "LD_PRELOAD": library},
                        capture_output=True, text=True, timeout=60, check=False)
  return done.returncode == 0 and "is not the worker_binary" in done.stderr


def _complete(libraries: Libraries) -> bool:
  return all(os.path.isfile(p) and os.path.getsize(p) > 0
             for p in (libraries.python, libraries.worker)) and _preloads(libraries.worker)


def build(worker_binary: str, *, log=None) -> Libraries:
  """The two libraries for this worker_binary, built into the cache if not there yet.

  A cache entry that is incomplete or whose worker library the loader refuses (a build
  killed midway, a damaged file) is built again.
  """
  cxx, cc = _compilers()
  try:
    with elf.ElfFile(worker_binary) as binary:
      build_id = binary.build_id()
  except (OSError, elf.ElfError) as e:
    raise BuildError(f"cannot read {worker_binary}: {e}") from None
  compile_flags, link_flags, tf_version = _tf_flags()
  key = _key(build_id, cxx, cc, compile_flags, tf_version)
  root = os.path.abspath(cache_root())
  if any(c in root for c in " :\t\n"):
    # LD_PRELOAD separates libraries by spaces and colons.
    raise BuildError(f"the cache {root!r} holds a space or colon, which LD_PRELOAD cannot "
                     "carry: set FEDCOMPRESS_NATIVE_CACHE to another folder")
  final = os.path.join(root, key)
  libraries = Libraries(os.path.join(final, "fc_ops_python.so"),
                        os.path.join(final, "fc_ops_worker.so"))
  if os.path.isdir(final) and _complete(libraries):
    return libraries
  try:
    os.makedirs(root, exist_ok=True)
    with _locked(os.path.join(root, f"{key}.lock")):
      if os.path.isdir(final):
        if _complete(libraries):  # Built by another process while this one waited.
          return libraries
        shutil.rmtree(final)
      if log is not None:
        log(f"fedcompress: building its native kernels into {final} (once, ~15 s)")
      staging = tempfile.mkdtemp(prefix=f"{key}.", dir=root)
      try:
        _compile_into(staging, worker_binary, build_id, cxx, cc, compile_flags, link_flags)
        os.chmod(staging, 0o755)  # mkdtemp's 0700 kept other users of a shared cache out.
        os.rename(staging, final)
      finally:
        shutil.rmtree(staging, ignore_errors=True)
  except OSError as e:
    raise BuildError(f"cannot build in {root}: {e}") from None
  if not _complete(libraries):
    raise BuildError(f"the loader refuses the worker library built at {libraries.worker}")
  return libraries
