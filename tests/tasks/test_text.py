"""Tests of the text helpers: robust decoding, ASCII folding, cached downloads."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest

from fedcompress.tasks.datasets import char_vocab
from fedcompress.tasks.datasets.text import (
    TextInputError,
    download_texts,
    fold_to_ascii,
    load_text_files,
    read_text_file,
)


def test_fold_to_ascii_typography_and_accents():
  text = ("\u201cWhat\u2019s this?\u201d \u2014 said he\u2026 caf\u00e9 na\u00efve "
          "\u00e6on\u00a0X\tY \ufeff\u2018q\u2019 \u2013 \u2212")
  assert fold_to_ascii(text) == "\"What's this?\" -- said he... cafe naive aeon X Y 'q' - -"
  assert fold_to_ascii("line\r\nnext") == "line\r\nnext"  # '\r' is in the vocabulary.
  assert fold_to_ascii("\u4e2d") == "\u4e2d"  # No ASCII form: left for the caller.


def test_read_text_file_utf8_bom_and_latin1_fallback(tmp_path):
  utf8 = tmp_path / "u.txt"
  utf8.write_bytes("\ufeff\u201cHi\u201d".encode())
  latin1 = tmp_path / "l.txt"
  latin1.write_bytes(b"Sch\xf6n")  # 0xf6 is not valid UTF-8.
  assert read_text_file(utf8) == "\u201cHi\u201d"
  assert read_text_file(latin1) == "Sch\u00f6n"
  assert load_text_files([utf8, latin1]) == '"Hi"\nSchon\n'


def test_read_text_file_windows_1252_and_utf8_with_a_bad_byte(tmp_path):
  # Windows-1252's curly quotes and dashes (0x91-0x97) are C1 controls in Latin-1.
  cp1252 = tmp_path / "w.txt"
  cp1252.write_bytes(b"\x93Don\x92t\x94 \x97 caf\xe9 \x81")
  assert read_text_file(cp1252) == "\u201cDon\u2019t\u201d \u2014 caf\u00e9 \x81"
  # UTF-8 with one stray byte stays UTF-8: only that byte is lost, not every accent.
  mostly = tmp_path / "m.txt"
  mostly.write_bytes("\u201cDon\u2019t\u201d caf\u00e9 ".encode() + b"\xff!")
  assert read_text_file(mostly) == "\u201cDon\u2019t\u201d caf\u00e9 \ufffd!"
  assert load_text_files([cp1252, mostly]).startswith("\"Don't\" -- cafe")
  # Windows-1252 whose bytes form one valid UTF-8 sequence by accident (\xe9\x92\x94):
  # still Windows-1252, not UTF-8 with every other accent and quote dropped.
  accident = tmp_path / "a.txt"
  accident.write_bytes(b"r\xe9\x92\x94 and \x93more\x94 caf\xe9")
  assert read_text_file(accident) == "r\u00e9\u2019\u201d and \u201cmore\u201d caf\u00e9"
  # UTF-8's byte-order mark with stray Windows-1252 quotes that outnumber the accents:
  # still UTF-8 (it read as Windows-1252 before: the mark as "\u00ef\u00bb\u00bf",
  # the accent as "\u00c3\u00a9").
  marked = tmp_path / "b.txt"
  marked.write_bytes(b"\xef\xbb\xbfcaf\xc3\xa9 said \x93hello\x94")
  assert read_text_file(marked) == "caf\u00e9 said \ufffdhello\ufffd"
  # UTF-16 with its byte-order mark (Windows' "Unicode" text), both byte orders.
  for encoding in ("utf-16-le", "utf-16-be"):
    utf16 = tmp_path / f"{encoding}.txt"
    utf16.write_bytes("\ufeff\u201cDon\u2019t\u201d caf\u00e9".encode(encoding))
    assert read_text_file(utf16) == "\u201cDon\u2019t\u201d caf\u00e9"


def test_missing_file_is_a_clear_error(tmp_path):
  with pytest.raises(TextInputError, match="text file not found: .*nope.txt"):
    load_text_files([tmp_path / "nope.txt"])
  with pytest.raises(TextInputError, match="no text files"):
    load_text_files([])


def test_dickens_texts_fold_into_the_vocabulary(shared_data):
  text = load_text_files([shared_data / "text" / "a_tale_of_two_cities.txt",
                          shared_data / "text" / "a_christmas_carol.txt"])
  assert set(text) <= set(char_vocab.VOCAB)
  assert "Scrooge" in text and "It was the best of times" in text


class _Server:
  """A real HTTP server on 127.0.0.1 serving a folder, counting requests."""

  def __init__(self, root):
    self.requests = []
    outer = self

    class Handler(http.server.SimpleHTTPRequestHandler):
      def log_message(self, *args):  # Keep test output clean.
        pass

      def do_GET(self):
        outer.requests.append(self.path)
        super().do_GET()

    self.httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
    self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
    self.thread.start()

  def close(self):
    self.httpd.shutdown()
    self.httpd.server_close()
    self.thread.join()


@pytest.fixture()
def server(tmp_path):
  root = tmp_path / "www"
  root.mkdir()
  (root / "book.txt").write_bytes("\u201cA\u201d book\n".encode())
  s = _Server(root)
  yield s
  s.close()


def test_download_texts_caches(server, tmp_path):
  cache = tmp_path / "cache"
  lines = []
  (path,) = download_texts([f"{server.url}/book.txt"], cache, log=lines.append)
  assert path.parent == cache and path.name.endswith("-book.txt")
  assert load_text_files([path]) == '"A" book\n'
  (again,) = download_texts([f"{server.url}/book.txt"], cache)
  assert again == path
  assert server.requests == ["/book.txt"]  # The second call used the cache.
  assert "downloaded" in lines[0]
  assert [p.name for p in cache.iterdir()] == [path.name]  # No temporary files left.


def test_download_errors_are_clear(server, tmp_path):
  with pytest.raises(TextInputError, match="cannot download .*missing.txt: HTTP 404"):
    download_texts([f"{server.url}/missing.txt"], tmp_path / "cache")
  with pytest.raises(TextInputError, match="cannot download"):
    download_texts(["not a url"], tmp_path / "cache")
  assert list((tmp_path / "cache").iterdir()) == []
