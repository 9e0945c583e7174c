"""What every binary does the same way at its edges (no TensorFlow import).

Bad input is one `error: ...` line on stderr and a non-zero exit, never a traceback:
`fail` for what `main()` finds wrong, `parse_flags` (passed to `absl.app.run` as
`flags_parser`) for what absl finds wrong before `main()` runs: an unknown flag, a value
outside an enum, a flagfile that does not exist. `interruptible(main)` turns Ctrl-C into
one line too:

    app.run(interruptible(main, "--resume continues the run"), flags_parser=parse_flags)
"""

from __future__ import annotations

import argparse
import atexit
import functools
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from fedcompress.federated import signals as _signals

# Exit code of a usage error (bad flag or input), as argparse and getopt-style tools use.
USAGE_ERROR = 2
# Shells report a process ended by signal N as 128 + N.
INTERRUPTED = 128 + signal.SIGINT


# The SIGINT and SIGTERM handlers `start_binary` replaced, put back when `interruptible`'s
# main starts.
_BEFORE_MAIN: dict[int, object] = {}
# Whether `start_binary` ran in a process's `__main__` (not in a test importing it).
_AS_BINARY = False


def start_binary(module_name: str) -> None:
  """What a binary's module does first, before it imports TensorFlow:
  `cli.start_binary(__name__)`.

  Quiets TensorFlow's C++ logs (it reads their level only when it loads), and, run as
  `__main__` (not imported, as tests do), until the binary's `interruptible` main
  starts, says Ctrl-C and SIGTERM in one line. Importing
  TensorFlow and TFF takes seconds, the likeliest moment for a Ctrl-C after a typo: it
  printed a KeyboardInterrupt traceback from inside their imports, and SIGTERM ended the
  process without a word. Nothing has been written then. A signal the process was
  started ignoring (a background job's SIGINT) stays ignored.
  """
  from fedcompress.federated import quiet

  global _AS_BINARY
  quiet.quiet_tensorflow()
  if module_name != "__main__":
    return
  _AS_BINARY = True
  for sig, what in ((signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated (SIGTERM)")):
    previous = signal.getsignal(sig)
    if previous in (signal.default_int_handler, signal.SIG_DFL):
      _BEFORE_MAIN[sig] = previous
      signal.signal(sig, functools.partial(_exit_while_starting, what))


def _exit_while_starting(what: str, sig: int, frame) -> None:
  del frame
  os.write(2, f"error: {what} while starting; nothing was written\n".encode())
  os._exit(128 + sig)  # No exception: it would unwind through half-imported modules.


def fail(message: str, code: int = USAGE_ERROR) -> int:
  """Prints one `error: ...` line on stderr and returns the exit code for main()."""
  print(f"error: {one_line(message)}", file=sys.stderr, flush=True)
  return code


def warn(message: str) -> None:
  """Prints one `warning: ...` line on stderr (a run goes on)."""
  print(f"warning: {one_line(message)}", file=sys.stderr, flush=True)


_warned: set[str] = set()


def warn_once(message: str) -> None:
  """`warn`, but a message this process already printed is not repeated.

  For warnings about the flags, which a sweep builds once per run (and again when it
  resumes one): the same flag given to every run is said once.
  """
  line = one_line(message)
  if line not in _warned:
    _warned.add(line)
    warn(line)


class ArgumentParser(argparse.ArgumentParser):
  """argparse's parser for the tools, with the binaries' convention: a usage error is one
  `error: ...` line on stderr and exit 2, where argparse printed its usage block first."""

  def error(self, message: str):
    sys.exit(fail(f"{message} (--help lists the options)"))

  def parse_known_args(self, args=None, namespace=None):
    namespace, rest = super().parse_known_args(args, namespace)
    for name in PATH_FLAGS:  # `~` expanded, as the binaries' parse_flags does.
      if isinstance(value := getattr(namespace, name, None), str | list):
        setattr(namespace, name, _expanded(value))
    return namespace, rest


def check_output_file(path: str) -> None:
  """Makes `path`'s folder and checks that a result can be written there, before the
  work that makes it: tools checked only that the folder could be made, and an existing
  folder given as the file lost their figures to a traceback at the end.

  Raises:
    ValueError: one line, what is wrong with `path`.
  """
  if not path:
    raise ValueError("the path is empty: name the file to write")
  if os.path.isdir(path) or path.endswith((os.sep, "/")):
    # A folder to be made names no file either (plot.py's --output takes one; these not).
    raise ValueError(f"{path} is a directory; name the file to write")
  folder = os.path.dirname(os.path.abspath(path))
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise ValueError(f"cannot make {folder}: {e.strerror or e}") from None
  if not os.access(folder, os.W_OK):
    raise ValueError(f"{folder} is not a writable directory")


def one_line(message: str) -> str:
  """`message` with its line breaks and runs of whitespace folded into single spaces."""
  return " ".join(str(message).split())


def parse_flags(argv: Sequence[str]) -> list[str]:
  """`absl.app.run(main, flags_parser=parse_flags)`: flag errors as one line, exit 2.

  absl's default parser prints 'FATAL Flags parsing error: ...' plus a help hint on a
  second line (and multi-line messages indented under it) and exits 1.

  Args:
    argv: the command line, program name first.

  Returns:
    The arguments left after flags, program name first (what `main` receives).
  """
  from absl import flags

  try:
    rest = flags.FLAGS(list(argv))
  except SystemExit as e:
    # absl's --help, --helpshort, --helpfull and --helpxml print the help and exit 1;
    # help asked for is not a failure (`binary --help && ...` must go on).
    if e.code == 1 and any(_is_help_flag(a) for a in argv[1:]):
      sys.exit(0)
    raise
  except UnicodeDecodeError as e:
    # absl reads a --flagfile as UTF-8 and lets the decode error through.
    files = [a.split("=", 1)[1] for a in argv if a.startswith("--flagfile=")]
    where = f"a --flagfile ({', '.join(files)})" if files else "the command line"
    sys.exit(fail(f"{where} is not UTF-8 text: byte 0x{e.object[e.start]:02x} at offset "
                  f"{e.start} of a line ({e.reason})"))
  except flags.Error as e:
    # absl prefixes some messages with its own 'ERROR::'; ours already says error.
    message = re.sub(r"^\s*ERROR::\s*", "", str(e))
    # A bad value's message says what is valid; a name absl does not know needs the list.
    if isinstance(e, flags.UnrecognizedFlagError):
      message += " (--helpshort lists the flags)"
    sys.exit(fail(message))
  try:
    check_no_byte_order_mark(rest[1:])
  except ValueError as e:
    sys.exit(fail(str(e)))
  expand_home(flags.FLAGS)
  return rest


# The binaries' and tools' path flags. The shell expands `~` only at a word's start, so
# `--root_output_dir=~/runs` came through as is: a folder named `~` was made in the
# current one and said as `~/runs/x`, which reads as home, and a model looked for at
# `~/m.keras` was missing where the code that wrote it had expanded it.
PATH_FLAGS = ("root_output_dir", "cache_dir", "memory_cache_dir", "output", "readme",
              "pretrained_model", "text_files", "flagfiles", "codec_modules", "runs",
              "configs", "benchmark_json")


def _expanded(value):
  return ([os.path.expanduser(v) for v in value] if isinstance(value, list)
          else os.path.expanduser(value))


def expand_home(fv) -> None:
  """`~` expanded in the `PATH_FLAGS` that `fv` defines (lists entry by entry)."""
  for name in PATH_FLAGS:
    if name in fv and fv[name].value is not None:
      fv[name].value = _expanded(fv[name].value)


_BYTE_ORDER_MARK = "\ufeff"


def check_no_byte_order_mark(arguments: Sequence[str]) -> None:
  """Raises ValueError for an argument starting with a UTF-8 byte-order mark.

  A flagfile saved with one (as some Windows editors do): absl takes its first line for
  an argument, said as "unexpected arguments: --rounds=1", the mark invisible.
  """
  if marked := [a for a in arguments if a.startswith(_BYTE_ORDER_MARK)]:
    raise ValueError(f"{marked[0][1:]!r} starts with an invisible byte-order mark "
                     "(U+FEFF): save the flagfile as UTF-8 without one")


_HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml")


def _is_help_flag(arg: str) -> bool:
  """`--help`, `-?`, `-help`, `--helpfull=true`...: what makes absl print help and exit."""
  if arg == "-?":
    return True
  name, _, value = arg.lstrip("-").partition("=")
  return arg.startswith("-") and name in _HELP_FLAGS and value.lower() not in (
      "false", "0")


def interruptible(main: Callable[[list[str]], int | None],
                  hint: str | Callable[[], str] = ""
                  ) -> Callable[[list[str]], int | None]:
  """`main` with Ctrl-C (SIGINT) and SIGTERM reported as one line (exit 130 and 143).

  Without it Python prints a KeyboardInterrupt traceback from wherever the main thread
  was waiting (usually deep inside TFF), and SIGTERM (made an exception by
  `runtime.install_signal_handlers`) ends the run without a word. `finally` blocks and
  atexit handlers run as before: reporters close their files and the TFF worker is
  stopped.

  Args:
    main: the binary's `main(argv)`.
    hint: what the user can do next, e.g. how to resume; a function is called when
      the signal comes (what is kept then, such as the newest checkpoint).
  """

  def said(what: str) -> str:
    text = hint() if callable(hint) else hint
    return what + (f"; {text}" if text else "")

  @functools.wraps(main)
  def wrapped(argv: list[str]) -> int | None:
    while _BEFORE_MAIN:  # `start_binary`'s handlers: from here, the lines below say it.
      signal.signal(*_BEFORE_MAIN.popitem())
    try:
      return main(argv)
    except KeyboardInterrupt:
      code = fail(said("interrupted"), INTERRUPTED)
    except _signals.Terminated as e:
      code = fail(said("terminated (SIGTERM)"), e.code)
    if _AS_BINARY:
      _exit_after_atexit(code)
    return code

  return wrapped


def _exit_after_atexit(code: int) -> NoReturn:
  """Ends an interrupted binary after its atexit handlers (the TFF worker's stop, the
  logs' flush) but before Python's finalization.

  A round interrupted while native threads of TFF or gRPC were running ended, after its
  one line, in a C++ abort ("FATAL: exception not rethrown", exit -6, about one
  interrupt in ten 1.2 s into a resume, review R3 of s47): the finalization stops
  threads that then reach for the GIL by unwinding them through C++ code that
  swallows the unwind. Every `finally` of `main` has run by now.
  """
  sys.stdout.flush()
  sys.stderr.flush()
  atexit._run_exitfuncs()  # Private, and the one way to run them before os._exit.
  os._exit(code)


def run_script(main: Callable[[list[str] | None], int | None]) -> NoReturn:
  """Runs an argparse tool's `main(argv=None)` as `__main__`, its exit code the process's.

  Ctrl-C is one `error: interrupted` line (exit 130), as in the absl binaries
  (`interruptible`), not a KeyboardInterrupt traceback from deep inside TensorFlow.
  """
  sys.exit(interruptible(main)(None))
