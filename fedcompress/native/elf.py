"""The little of ELF64 that the worker build needs: symbol tables and the build ID.

Read with `struct` rather than binutils' `nm`, so that building needs only a C++
compiler. Little-endian x86-64 files only (what TFF's worker_binary is).
"""

from __future__ import annotations

import dataclasses
import mmap
import struct

_SHT_SYMTAB = 2
_SHT_NOTE = 7
_SHN_UNDEF = 0
_NT_GNU_BUILD_ID = 3
_STT_FUNC = 2
_STT_GNU_IFUNC = 10


class ElfError(ValueError):
  """Not an ELF64 little-endian file, or one without what is asked of it."""


@dataclasses.dataclass(frozen=True)
class Symbol:
  name: str
  value: int
  is_function: bool
  defined: bool


class ElfFile:
  """An ELF64 file mapped read-only: `with ElfFile(path) as elf: ...`."""

  def __init__(self, path: str):
    self.path = path
    self._file = open(path, "rb")
    try:
      self._data = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
    except ValueError as e:  # An empty file cannot be mapped.
      self._file.close()
      raise ElfError(f"{path} is not an ELF file") from e
    if self._data[:4] != b"\x7fELF" or self._data[4] != 2 or self._data[5] != 1:
      self.close()
      raise ElfError(f"{path} is not a little-endian ELF64 file")
    (self._shoff,) = struct.unpack_from("<Q", self._data, 0x28)
    self._shentsize, self._shnum = struct.unpack_from("<HH", self._data, 0x3A)

  def __enter__(self) -> ElfFile:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def close(self) -> None:
    self._data.close()
    self._file.close()

  def _sections(self):
    for i in range(self._shnum):
      # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info,
      # sh_addralign, sh_entsize
      yield struct.unpack_from("<IIQQQQIIQQ", self._data, self._shoff + i * self._shentsize)

  def _section(self, index: int):
    return struct.unpack_from("<IIQQQQIIQQ", self._data, self._shoff + index * self._shentsize)

  def symbols(self, names: set[str] | None = None) -> dict[str, Symbol]:
    """The static symbol table (.symtab), only `names` when given."""
    found: dict[str, Symbol] = {}
    for _, sh_type, _, _, offset, size, link, _, _, entsize in self._sections():
      if sh_type != _SHT_SYMTAB:
        continue
      strtab_offset = self._section(link)[4]
      for at in range(offset, offset + size, entsize):
        st_name, st_info, _, st_shndx, st_value, _ = struct.unpack_from(
            "<IBBHQQ", self._data, at)
        if not st_name:
          continue
        start = strtab_offset + st_name
        name = self._data[start:self._data.find(b"\0", start)].decode("latin-1")
        if names is not None and name not in names:
          continue
        kind = st_info & 0xF
        symbol = Symbol(name, st_value, kind in (_STT_FUNC, _STT_GNU_IFUNC),
                        st_shndx != _SHN_UNDEF)
        # A name may appear twice (a local and a global); the defined one counts.
        if symbol.defined or name not in found:
          found[name] = symbol
    if not found and names is None:
      raise ElfError(f"{self.path} has no symbol table (stripped?)")
    return found

  def build_id(self) -> str:
    """The GNU build ID note, as hex."""
    for _, sh_type, _, _, offset, size, _, _, _, _ in self._sections():
      if sh_type != _SHT_NOTE:
        continue
      at = offset
      while at + 12 <= offset + size:
        namesz, descsz, note_type = struct.unpack_from("<III", self._data, at)
        name_at = at + 12
        desc_at = name_at + (namesz + 3) // 4 * 4
        if note_type == _NT_GNU_BUILD_ID and self._data[name_at:name_at + 3] == b"GNU":
          return self._data[desc_at:desc_at + descsz].hex()
        at = desc_at + (descsz + 3) // 4 * 4
    raise ElfError(f"{self.path} has no GNU build ID")
