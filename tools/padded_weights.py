"""How much `--pad_short_clients` inflates Shakespeare clients' example weights.

  python -m tools.padded_weights --cache_dir=../shared/data/tff [--client_batch_size=4]
      [--seq_length=80] [--max_clients=0] [--output=runs/padded_weights.json]

With `--pad_short_clients` a client's last window is padded, and so is its last batch,
with rows of padding only: the models' batch dimension is static. TFF's example
weighting (`--client_weighting=num_examples`) counts a batch's rows, those rows
included, where a pipeline with a short last batch (the FedOpt paper's) counts the real
windows only. This goes through every training client's pipeline once
(`fedcompress.tasks.datasets.shakespeare.preprocess`, as the runs build it, one epoch)
and counts both: rows (what TFF weighs) and windows holding at least one real target.
Prints how many clients weigh more than their real windows, at least twice, and the
worst; writes the counts to `--output`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from fedcompress.harness.cli import ArgumentParser, check_output_file, run_script


def count_rows(dataset) -> tuple[int, int]:
  """(rows, rows holding a real target) of a preprocessed client dataset."""
  import tensorflow as tf

  from fedcompress.tasks.datasets import shakespeare as sh

  rows = real = 0
  for _, targets in dataset:
    rows += int(targets.shape[0])
    real += int(tf.reduce_sum(tf.cast(tf.reduce_any(targets != sh.PAD_ID, axis=1), tf.int32)))
  return rows, real


def main(argv: Sequence[str] | None = None) -> None:
  parser = ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cache_dir", default=None, help="folder of shakespeare.sqlite")
  parser.add_argument("--client_batch_size", type=int, default=4)
  parser.add_argument("--seq_length", type=int, default=80)
  parser.add_argument("--max_clients", type=int, default=0, help="0: every training client")
  parser.add_argument("--output", default="runs/padded_weights.json")
  args = parser.parse_args(argv)
  if args.client_batch_size < 1 or args.seq_length < 1 or args.max_clients < 0:
    parser.error("--client_batch_size and --seq_length must be >= 1, --max_clients >= 0")
  try:
    check_output_file(args.output)
  except ValueError as e:
    parser.error(f"--output: {e}")
  import fedcompress

  fedcompress.quiet_tensorflow()
  from fedcompress.harness import rundir
  from fedcompress.harness.cli import fail
  from fedcompress.tasks.datasets import shakespeare as sh
  from fedcompress.tasks.errors import DatasetUnavailableError, cached_path, file_fingerprint

  try:
    train, _ = sh.load_shakespeare(args.cache_dir)
  except DatasetUnavailableError as e:
    raise SystemExit(fail(str(e), 1)) from None
  clients = list(train.client_ids)[:args.max_clients or None]
  counts = {}
  for client in clients:
    counts[client] = count_rows(sh.preprocess(
        train.create_tf_dataset_for_client(client), batch_size=args.client_batch_size,
        seq_length=args.seq_length, seed=0, pad_short_clients=True))
  ratios = {c: rows / real for c, (rows, real) in counts.items() if real}
  worst = max(ratios, key=ratios.get)
  summary = {"clients": len(counts), "heavier": sum(r > 1 for r in ratios.values()),
             "at_least_twice": sum(r >= 2 for r in ratios.values()),
             "without_real_windows": sum(not real for _, real in counts.values()),
             "worst": {"client": worst, "ratio": ratios[worst]}}
  print(f"{summary['clients']} clients at batch {args.client_batch_size} and length "
        f"{args.seq_length}: {summary['heavier']} weigh more than their real windows, "
        f"{summary['at_least_twice']} at least twice; the worst {worst} "
        f"{ratios[worst]:.2f}x ({counts[worst][0]} rows for {counts[worst][1]} windows)")
  with open(args.output, "w") as f:
    # The data it counted too: which file, and how many of its clients.
    json.dump({"client_batch_size": args.client_batch_size, "seq_length": args.seq_length,
               "max_clients": args.max_clients, "cache_dir": args.cache_dir,
               "data_file_fingerprint": file_fingerprint(
                   cached_path(args.cache_dir, sh.SHAKESPEARE_SQLITE)),
               "summary": summary, "counts": counts, "source": rundir.source()}, f, indent=1)
  print(f"wrote {args.output}")


if __name__ == "__main__":
  run_script(main)
