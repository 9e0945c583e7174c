"""Plain-text corpora for pretraining the character RNN.

Real-world e-texts are messy: Project Gutenberg files come as UTF-8 with a byte-order
mark, or as Latin-1 that is not valid UTF-8, and use curly quotes and long dashes that
the Shakespeare tutorial's 86-character ASCII vocabulary does not have. This module reads
such files robustly, folds typography to ASCII, and downloads texts into a cache.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import pathlib
import re
import shutil
import tempfile
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence


class TextInputError(Exception):
  """A text input (file or URL) is missing, unreadable or unusable."""


# Typographic characters and their ASCII spellings. Anything not listed here that has a
# compatibility or accent-stripped ASCII form (e.g. 'é' -> 'e', 'ﬁ' -> 'fi') is handled
# by Unicode NFKD in `fold_to_ascii`.
_TYPOGRAPHY = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",  # single quotes
    "\u2032": "'", "\u02bc": "'", "\u00b4": "'", "\u0060": "'",  # prime, modifier, accents
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"',  # double quotes
    "\u2033": '"', "\u00ab": '"', "\u00bb": '"',                  # double prime, guillemets
    "\u2039": "'", "\u203a": "'",                                # single guillemets
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-",  # hyphens, en dash
    "\u2014": "--", "\u2015": "--", "\u2212": "-", "\u00ad": "",   # em dash, bar, minus, soft
    "\u2026": "...",                                             # ellipsis
    "\u00a0": " ", "\u2002": " ", "\u2003": " ", "\u2009": " ",  # non-breaking/thin spaces
    "\u200a": " ", "\u202f": " ", "\t": " ",
    "\u200b": "", "\ufeff": "",                                  # zero-width space, BOM
    "\u2022": "*", "\u00b7": ".",                                # bullet, middle dot
    "\u00e6": "ae", "\u00c6": "AE", "\u0153": "oe", "\u0152": "OE", "\u00df": "ss",
}
_TYPOGRAPHY_TABLE = str.maketrans(_TYPOGRAPHY)


def _cp1252_from_latin1() -> dict[int, str]:
  table = {}
  for byte in range(0x80, 0xA0):
    try:
      table[byte] = bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:
      pass  # 0x81, 0x8D, 0x8F, 0x90, 0x9D: undefined in Windows-1252, kept as Latin-1.
  return table


# Latin-1 text -> Windows-1252: only 0x80-0x9F differ (curly quotes, dashes, euro, ...).
_CP1252_FROM_LATIN1 = _cp1252_from_latin1()


def read_text_file(path: str | os.PathLike[str]) -> str:
  """Reads one text file as UTF-8 (BOM stripped), else as Windows-1252 / Latin-1.

  A file that starts with a UTF-16 byte-order mark is UTF-16. A file that is not valid
  UTF-8 is either UTF-8 with a few bad bytes (it starts with UTF-8's byte-order mark, or
  has more valid multi-byte characters than bad bytes: decoded as UTF-8, each bad byte a
  U+FFFD that the vocabulary then drops) or single-byte text: Windows-1252, which is
  Latin-1 but for curly quotes and dashes in 0x80-0x9F (its five undefined bytes read
  as Latin-1). That covers the Gutenberg files that are "ASCII except for a few Latin-1
  accented letters", which read the same either way, and never fails.

  Raises:
    TextInputError: the file does not exist or cannot be read.
  """
  path = pathlib.Path(path)
  try:
    data = path.read_bytes()
  except FileNotFoundError:
    raise TextInputError(f"text file not found: {path}") from None
  except OSError as e:
    raise TextInputError(f"cannot read text file {path}: {e.strerror or e}") from None
  if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
    # Windows' "Unicode" text: read as bytes it is every other character a NUL.
    try:
      return data.decode("utf-16")
    except UnicodeDecodeError:
      pass
  try:
    return data.decode("utf-8-sig")
  except UnicodeDecodeError:
    pass
  mostly_utf8 = data.decode("utf-8-sig", errors="replace")
  # UTF-8 with a few bad bytes has more valid multi-byte characters than bad bytes;
  # Windows-1252 text whose bytes happen to form one valid sequence ("\xe9\x92\x94") has
  # far fewer, and reading it as UTF-8 would drop all its other accents and quotes.
  # A UTF-8 byte-order mark says so whatever the count: read as Windows-1252 it would be
  # three letters of text and every accent two.
  valid = sum(ord(c) > 127 and c != "\ufffd" for c in mostly_utf8)
  if data.startswith(codecs.BOM_UTF8) or valid > mostly_utf8.count("\ufffd"):
    return mostly_utf8
  return data.decode("latin-1").translate(_CP1252_FROM_LATIN1)


def fold_to_ascii(text: str) -> str:
  """Folds curly quotes, dashes, ellipses, odd spaces and accents to ASCII.

  Windows line endings are kept: the tutorial's vocabulary has '\\r' on purpose. Characters
  with no ASCII form are left for the caller's vocabulary to deal with.
  """
  text = text.translate(_TYPOGRAPHY_TABLE)
  if text.isascii():
    return text
  out = []
  for ch in text:
    if ch.isascii():
      out.append(ch)
      continue
    decomposed = unicodedata.normalize("NFKD", ch)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    # Keep the original when NFKD gives nothing ASCII (e.g. CJK) so callers can count it.
    out.append(stripped if stripped and stripped.isascii() else ch)
  return "".join(out)


def load_text_files(paths: Iterable[str | os.PathLike[str]]) -> str:
  """Reads, decodes and folds several text files, concatenated with a newline between.

  Args:
    paths: the files, in order.

  Returns:
    The folded text of all files.

  Raises:
    TextInputError: no paths were given, or a file is missing or unreadable.
  """
  paths = list(paths)
  if not paths:
    raise TextInputError("no text files given")
  texts = [fold_to_ascii(read_text_file(p)) for p in paths]
  return "\n".join(t.rstrip("\n") for t in texts) + "\n"


def _cache_name(url: str) -> str:
  # A hash of the whole URL keeps two different `.../pg98.txt` from colliding.
  base = os.path.basename(urllib.parse.urlparse(url).path) or "index"
  base = re.sub(r"[^A-Za-z0-9._-]", "_", base)
  return f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{base}"


def download_texts(urls: Sequence[str], cache_dir: str | os.PathLike[str], *,
                   timeout_s: float = 60.0,
                   log: Callable[[str], None] | None = None) -> list[pathlib.Path]:
  """Downloads each URL into `cache_dir` (once) and returns the local paths.

  A file already in the cache is not downloaded again. Downloads go to a temporary file
  renamed into place at the end, so an interrupted download never looks cached.

  Args:
    urls: http(s) or file URLs.
    cache_dir: where downloaded texts are kept; created if missing.
    timeout_s: socket timeout of each request.
    log: called with one progress line per URL (e.g. `print`); silent when None.

  Returns:
    The cached file of each URL, in order.

  Raises:
    TextInputError: a URL could not be fetched.
  """
  cache_dir = pathlib.Path(cache_dir).expanduser()
  try:
    cache_dir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise TextInputError(f"--cache_dir {cache_dir}: cannot create it ({e.strerror or e})"
                         ) from None
  paths = []
  for url in urls:
    target = cache_dir / _cache_name(url)
    if target.is_file():
      if log:
        log(f"using cached {url} -> {target}")
      paths.append(target)
      continue
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".part-")
    try:
      with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as resp:
        shutil.copyfileobj(resp, out)
      os.replace(tmp, target)
    except urllib.error.HTTPError as e:
      raise TextInputError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
      # ValueError: malformed URL (e.g. no scheme).
      reason = getattr(e, "reason", None) or e
      raise TextInputError(f"cannot download {url}: {reason}") from None
    finally:
      if os.path.exists(tmp):
        os.unlink(tmp)
    if log:
      log(f"downloaded {url} -> {target} ({target.stat().st_size:,} bytes)")
    paths.append(target)
  return paths
