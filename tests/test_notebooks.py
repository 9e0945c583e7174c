"""The two tutorial notebooks run top to bottom, headless, with small parameters.

Each notebook is executed the way papermill does it: a cell of small settings is
inserted after the cell tagged `parameters`, then nbclient runs every cell in a fresh
kernel of this interpreter (a kernelspec written into a temporary folder, so no
user-level Jupyter kernel is needed or used) in a temporary working directory. Any cell
error fails the test. The outputs are then checked: run directories with the expected
rounds, the comparison figure displayed, the generated text written. A last cell added
by the test reports the kernel's TFF worker PIDs, which must be gone once the kernel has
shut down.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import pathlib
import shlex
import sys
import time

import nbformat
import pytest
import tensorflow as tf
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient

from fedcompress import metrics as m
from fedcompress.harness import reporting, rundir
from fedcompress.tasks.datasets import char_vocab
from fedcompress.tasks.datasets import shakespeare as sh
from fedcompress.tasks.models import char_rnn
from fedcompress.tasks.shakespeare import pretrained_fingerprint
from tools import sample_data

pytestmark = pytest.mark.notebook  # kernels run whole notebooks (minutes)

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO_ROOT / "notebooks"
SHARED_DATA = pathlib.Path(os.environ.get("FEDCOMPRESS_SHARED_DATA",
                                          REPO_ROOT.parent / "shared" / "data"))
KERNEL_NAME = "fedcompress-test"
CELL_TIMEOUT_S = 300  # Per cell; generous because other jobs share this machine's CPUs.
WORKER_PIDS_MARKER = "WORKER_PIDS="


def _load(name: str) -> nbformat.NotebookNode:
  return nbformat.read(NOTEBOOKS / name, as_version=4)


def _inject_parameters(nb: nbformat.NotebookNode, params: dict) -> nbformat.NotebookNode:
  """Inserts a cell assigning `params` after the `parameters` cell, as papermill does."""
  tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
  assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
  defined = nb.cells[tagged[0]].source
  for name in params:
    # An injected name the notebook does not define would silently do nothing.
    assert f"\n{name} = " in "\n" + defined, f"the parameters cell does not define {name}"
  source = "# Parameters injected by tests/test_notebooks.py\n" + "".join(
      f"{name} = {value!r}\n" for name, value in params.items())
  cell = nbformat.v4.new_code_cell(source)
  cell.metadata["tags"] = ["injected-parameters"]
  nb.cells.insert(tagged[0] + 1, cell)
  nb.cells.append(nbformat.v4.new_code_cell(
      "from fedcompress.federated import runtime as _runtime\n"
      f"print('{WORKER_PIDS_MARKER}' + ','.join(map(str, _runtime.worker_pids())))"))
  for i, c in enumerate(nb.cells):
    c["id"] = f"test-{i:02d}"  # Inserted cells need ids too (nbformat 4.5).
  return nb


def _kernel_manager(tmp: pathlib.Path) -> AsyncKernelManager:
  """A manager for a kernel of this very interpreter, from a kernelspec in `tmp`."""
  spec_dir = tmp / "kernels" / KERNEL_NAME
  spec_dir.mkdir(parents=True)
  (spec_dir / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "fedcompress tests", "language": "python"}))
  return AsyncKernelManager(
      kernel_name=KERNEL_NAME,
      kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp / "kernels")]),
      connection_file=str(tmp / "kernel-connection.json"))


def _rerun_cell(nb: nbformat.NotebookNode, starts: str, before: str = "") -> None:
  """Appends the cell whose source starts with `starts`, after `before`: run again."""
  (cell,) = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(starts)]
  nb.cells.append(nbformat.v4.new_code_cell(before + cell.source))


def _execute(name: str, params: dict, tmp: pathlib.Path, rerun: tuple = ()
             ) -> nbformat.NotebookNode:
  """Runs the notebook top to bottom, then the cells `rerun` names as `_rerun_cell` does."""
  nb = _load(name)
  for starts, before in rerun:
    _rerun_cell(nb, starts, before)
  nb = _inject_parameters(nb, params)
  workdir = tmp / "cwd"
  workdir.mkdir()
  km = _kernel_manager(tmp)
  client = NotebookClient(
      nb, km=km, kernel_name=KERNEL_NAME, timeout=CELL_TIMEOUT_S, startup_timeout=180,
      resources={"metadata": {"path": str(workdir)}})
  began = time.perf_counter()
  try:
    # IPYTHONDIR keeps the kernel's profile and history out of the user's home.
    client.execute(env={**os.environ, "IPYTHONDIR": str(tmp / "ipython")}, cleanup_kc=True)
  finally:
    # nbclient leaves a kernel it was handed running; a graceful shutdown lets the
    # kernel's atexit handlers (fedcompress stops its TFF worker) run.
    if run_sync(km.is_alive)():
      run_sync(km.shutdown_kernel)(now=False)
  print(f"{name}: executed in {time.perf_counter() - began:.0f}s")
  _assert_workers_stopped(nb)
  return nb


def _stream_text(nb: nbformat.NotebookNode) -> str:
  return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                 for o in c.get("outputs", []) if o.output_type == "stream")


def _cell_text(cell: nbformat.NotebookNode) -> str:
  return "".join(o.get("text", "") for o in cell.get("outputs", []))


def _assert_workers_stopped(nb: nbformat.NotebookNode) -> None:
  (line,) = [x for x in _stream_text(nb).splitlines() if x.startswith(WORKER_PIDS_MARKER)]
  pids = [int(p) for p in line[len(WORKER_PIDS_MARKER):].split(",") if p]
  assert pids, "the kernel should have started a TFF worker"
  deadline = time.monotonic() + 10
  while any(os.path.exists(f"/proc/{p}") for p in pids) and time.monotonic() < deadline:
    time.sleep(0.2)
  alive = [p for p in pids if os.path.exists(f"/proc/{p}")]
  assert not alive, f"TFF worker(s) {alive} outlived the notebook's kernel"


def _displayed_pngs(nb: nbformat.NotebookNode) -> list[str]:
  return [o["data"]["image/png"] for c in nb.cells if c.cell_type == "code"
          for o in c.get("outputs", []) if "image/png" in o.get("data", {})]


@pytest.mark.parametrize("name", ["emnist_compression.ipynb",
                                  "shakespeare_text_generation.ipynb"])
def test_notebook_is_saved_clean_and_valid(name):
  nb = _load(name)
  nbformat.validate(nb)
  assert nb.nbformat == 4
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(not c.outputs and c.execution_count is None for c in code), "saved with outputs"
  # The install cell itself: tests/test_notebooks_install_cell.py.
  assert "FEDCOMPRESS_SOURCE" in code[0].source and "Python 3.11" in nb.cells[0].source


def _emnist_params(tmp: pathlib.Path) -> dict:
  # A space in the path, as in a checkout under "My Projects": the TensorBoard command
  # printed must still paste into a shell.
  return dict(rounds=2, clients_per_round=2, digits_clients=16, rounds_per_eval=1,
              root_output_dir=str(tmp / "my runs"), show_tensorboard=False)


def _shakespeare_params(tmp: pathlib.Path) -> dict:
  params = dict(
      embedding_dim=8, rnn_units=16, pretrain_epochs=1, pretrain_steps=3, rounds=2,
      max_batches_per_client=2, max_eval_batches=2, threshold=100, num_generate=20,
      root_output_dir=str(tmp / "runs"), show_tensorboard=False, text_urls=[],
      text_cache_dir=str(tmp / "text_cache"))
  # The real federated Shakespeare when this checkout has the development data; else
  # the notebook writes its built-in sample with TFF's writer.
  real = SHARED_DATA / "tff" / sh.SHAKESPEARE_SQLITE
  if real.exists():
    params.update(cache_dir=str(real.parent))
  else:
    params.update(use_sample_data=True)
  # Dickens from the development data (the shorter novel, which is also the one that is
  # not valid UTF-8), else (an empty list) the notebook's built-in passage.
  carol = SHARED_DATA / "text" / "a_christmas_carol.txt"
  params.update(text_files=[str(carol)] if carol.exists() else [])
  return params


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  """Both notebooks, executed at the same time in two kernels.

  Concurrent kernels take about half the wall time on two cores. Each test takes its own
  notebook's future, so a failing notebook fails only its own test.
  """
  # Run again at the end, as a researcher does in Jupyter: the Shakespeare notebook's
  # data cell, and its pretraining with another model size.
  # The sample twice, whatever the first run read: the second writes over the first.
  again = (("if use_sample_data:", "use_sample_data = True\n"),
           ("if use_sample_data:", "use_sample_data = True\n"),
           ("if pretrained_model is None:", "pretrained_model = None\nembedding_dim = 12\n"))
  jobs = {"emnist": ("emnist_compression.ipynb", _emnist_params, ()),
          "shakespeare": ("shakespeare_text_generation.ipynb", _shakespeare_params, again)}
  with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
    futures = {}
    for key, (name, params, rerun) in jobs.items():
      tmp = tmp_path_factory.mktemp(key)
      futures[key] = (tmp, pool.submit(_execute, name, params(tmp), tmp, rerun))
  return futures


def test_emnist_compression_notebook(executed):
  tmp, future = executed["emnist"]
  nb = future.result()
  (run_root,) = (tmp / "my runs").iterdir()
  rows = {name: reporting.read_metrics_csv(str(run_root / name / "metrics.csv"))
          for name in ("original", "compressed_u8")}
  for name, r in rows.items():
    assert [row[m.ROUND] for row in r] == [1, 2], name
    assert all(row[m.EVAL_ACCURACY] is not None for row in r), name
  # Uncompressed: all 1,663,370 float32 parameters to each of the 2 clients; each client
  # also sends its float32 weight in the mean.
  original, compressed = rows["original"][0], rows["compressed_u8"][0]
  assert original[m.BROADCAST_BITS] == 2 * 1_663_370 * 32
  assert original[m.AGGREGATE_BITS] == 2 * (1_663_370 * 32 + 32)
  # The tutorial's 146.46 Mibit per round for 10 clients (153,575,360 bits, see
  # tests/codecs/test_accounting.py) is 15,357,536 bits per client.
  assert compressed[m.BROADCAST_BITS] == 2 * 15_357_536
  assert compressed[m.AGGREGATE_BITS] == 2 * (15_357_536 + 32)
  text = _stream_text(nb)
  assert "[original] round   1" in text and "[compressed_u8] round   2" in text
  # The kernel's own TensorBoard, which a Jupyter started elsewhere has not on its PATH.
  program = pathlib.Path(sys.executable).parent / "tensorboard"
  assert program.exists()
  assert f"TensorBoard: {shlex.quote(str(program))} --logdir {shlex.quote(str(run_root))}\n" in text
  assert (run_root / "comparison.png").stat().st_size > 20_000
  assert len(_displayed_pngs(nb)) == 1
  # Two clients of the tutorial's 146.46 against 507.62 Mibit per round, each way.
  assert ("compressed_u8 sent 3.47x fewer broadcast bits and 3.47x fewer aggregate bits "
          "than original; final eval accuracy") in text


def test_shakespeare_notebook(executed):
  tmp, future = executed["shakespeare"]
  nb = future.result()
  (run_root,) = (tmp / "runs").iterdir()
  assert (run_root / "char_rnn.keras").stat().st_size > 0
  # Pretrained again (another size) into a new file: the run kept the model it started
  # from, which its record names by digest.
  recorded = rundir.read_config(str(run_root / "finetune"))[rundir.PRETRAINED_DIGEST]
  assert recorded == pretrained_fingerprint(str(run_root / "char_rnn.keras"))
  assert (run_root / "char_rnn_2.keras").stat().st_size > 0
  again = tf.keras.models.load_model(run_root / "char_rnn_2.keras", compile=False)
  assert again.layers[0].output_dim == 12
  sample = not (SHARED_DATA / "tff" / sh.SHAKESPEARE_SQLITE).exists()
  first, *again = [c for c in nb.cells
                   if c.cell_type == "code" and "\nif use_sample_data:" in "\n" + c.source]
  clients = f"{len(sample_data.SAMPLE_TRAIN_CLIENTS)} training clients,"
  assert _cell_text(first).startswith(clients) == sample
  assert len(again) == 2 and all(_cell_text(c).startswith(clients) for c in again)
  run = run_root / "finetune"
  rows = reporting.read_metrics_csv(str(run / "metrics.csv"))
  assert [r[m.ROUND] for r in rows] == [1, 2]
  assert all(r[m.EVAL_ACCURACY] is not None for r in rows)
  params_count = char_rnn.create_char_rnn(embedding_dim=8, rnn_units=16).count_params()
  # The two tutorial clients get every float32 parameter; their updates are quantized.
  assert rows[0][m.BROADCAST_BITS] == 2 * params_count * 32
  assert rows[0][m.AGGREGATE_BITS] < rows[0][m.BROADCAST_BITS]
  prompt = "What of TensorFlow Federated, you ask? "
  # Bytes, not read_text(): universal newlines would fold a sampled '\r' into '\n'.
  written = (run / "generated.txt").read_bytes().decode()
  assert written.endswith("\n")
  generated = written[:-1]
  assert generated.startswith(prompt) and len(generated) == len(prompt) + 20
  assert set(generated) <= set(char_vocab.VOCAB)
  text = _stream_text(nb)
  # Only the prompt is compared: the notebook's stream output renders a sampled '\r'.
  assert "fine-tuned model says:\n" + prompt in text
  assert "sanity check: pretrained accuracy" in text and "round   2" in text
  assert len(_displayed_pngs(nb)) == 1
