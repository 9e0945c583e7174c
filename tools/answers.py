"""Answers the tutorial's three questions from seeded runs; writes JSON and the README.

  python -m tools.answers --readme=README.md        (what `make answers` runs)

For each dataset (the embedded digits, and fine-tuning a small pretrained character
RNN on the real federated Shakespeare in ../shared/data/tff) it runs every
configuration of `tools.answers_table.configurations()` (uplink codecs; the downlink
stays float32) once per seed through the sweep (finished runs are skipped, unfinished
resumed, runs made with other settings refused), then:

  (a) non-uniform against uniform quantization at 2, 3 and 4 bits per coordinate;
  (b) Huffman coding's saving against bit-packing and against the quantized symbols'
      empirical entropy, on clients' first-round updates re-encoded per seed
      (`tools.symbol_entropy`), and in-graph over the adaptive runs;
  (c) the adaptive codec (a budget of 2 coded bits per coordinate, its width chosen
      from earlier rounds) against fixed-rate codecs within the same budget,

each a table closed by a sentence computed from its numbers (`tools.answers_table`).
`--bits`, `--datasets`, `--configs` and `--probe_only` narrow the work (the last two to
split it over processes; rerun without them to write the results).
Writes `--output` (JSON: settings, per-run summaries, rows, sentences) and, with
`--readme`, the block between `<!-- codec-table:answers -->` and
`<!-- end codec-table -->`. The Shakespeare model is pretrained first (about a minute)
when `--pretrained_model` does not exist.
"""

import datetime
import hashlib
import json
import os
import subprocess

from fedcompress.harness import cli

# Before TensorFlow loads: it reads its log level only then, and a Ctrl-C while it
# does is one line.
cli.start_binary(__name__)

from absl import app, flags

from fedcompress import metrics as m
from fedcompress.federated import runtime
from fedcompress.harness import durable, rundir
from fedcompress.harness.cli import check_output_file, fail, interruptible, parse_flags
from fedcompress.harness.sweep import SweepRun, parse_seeds, run_sweep, sweep_failure
from tools import answers_table, codec_table

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAKESPEARE_DATA = "../shared/data/tff"
DICKENS = ("../shared/data/text/a_tale_of_two_cities.txt",
           "../shared/data/text/a_christmas_carol.txt")
# A small character RNN (the README's is 128/512, trained 3 epochs): enough to be a
# pretrained model the fine-tuning improves on, quick enough for the answers' budget.
PRETRAIN = {"embedding_dim": 64, "rnn_units": 256, "epochs": 1, "steps_per_epoch": 100,
            "learning_rate": 0.003, "seed": 0}

FLAGS = flags.FLAGS
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds every configuration runs with.")
flags.DEFINE_list("bits", ["2", "3", "4"], "Quantizer widths of (a) and (b); must "
                  "include 2, the adaptive codec's budget.")
flags.DEFINE_list("datasets", ["digits", "shakespeare"], "Which of digits, shakespeare.")
flags.DEFINE_string("root_output_dir", "runs/answers", "Folder of the runs.")
flags.DEFINE_string("output", "docs/answers.json", "JSON file of the results.")
flags.DEFINE_string("readme", None, "README to write the answers block into.")
flags.DEFINE_bool("probe_only", False, "Only measure (b)'s entropy probe (kept for "
                  "the next run), e.g. beside processes running --configs.")
flags.DEFINE_list("configs", [], "Run only these configurations (default all), e.g. to "
                  "split the runs over processes; the answers need them all.")
flags.DEFINE_string("pretrained_model", "runs/answers/char_rnn_answers.keras",
                    "Shakespeare's pretrained model; trained (PRETRAIN) when missing.")

# The run settings of each dataset: small enough for the whole command to take well
# under an hour on 2 cores, recorded in the JSON and the README with the numbers.
DATASETS = {
    "digits": {
        "experiment": "emnist",
        "common_flags": ("--dataset=digits --rounds=5 --clients_per_round=10 "
                         "--client_epochs=3 --client_learning_rate=0.1 --rounds_per_eval=5 "
                         "--rounds_per_checkpoint=5 --compression_threshold=100"),
        "title": "digits (scikit-learn's, 20 clients), 5 rounds of 10 clients, 3 local "
                 "epochs, client SGD 0.1, threshold 100",
        # Entropy probe: the first-round updates of these clients, trained as the runs'.
        "probe": {"clients": 1, "learning_rate": 0.1, "threshold": 100,
                  "from": "the model's initializers under that seed"},
    },
    "shakespeare": {
        "experiment": "shakespeare",
        "common_flags": ("--flagfile=configs/shakespeare/sampled.flags --rounds=5 "
                         "--clients_per_round=5 --client_epochs=1 --rounds_per_eval=5 "
                         "--rounds_per_checkpoint=5 --max_eval_batches=20 "
                         f"--cache_dir={SHAKESPEARE_DATA} --pretrained_model={{model}}"),
        "title": "Shakespeare fine-tuning (real federated Shakespeare, small pretrained "
                 "char-RNN), 5 rounds of 5 clients, 1 local epoch of 5 batches, client "
                 "SGD 0.5, threshold 10,000",
        "probe": {"clients": 1, "learning_rate": 0.5, "threshold": 10_000,
                  "from": "the pretrained model"},
    },
}


def _commit() -> str:
  """The block's stamp: the checkout's commit as run records keep it (`rundir.source`)."""
  source = rundir.source()
  if source is None:
    return "unknown"
  return source["commit"][:7] + (" (with modified files)" if source["dirty"] else "")


def _code(repo: str = rundir.CHECKOUT) -> str:
  """The code a probe is made by: the commit, and a digest of the uncommitted changes to
  `fedcompress/` and `tools/` when there are any; "unknown" without git.

  Not `_commit()`'s stamp: its "(with modified files)" comes on with `make answers`' own
  outputs (README.md, docs/answers.json), and then stays the same whatever code changes.
  """
  try:
    commit = rundir.git_output("rev-parse", "HEAD", repo=repo)
    diff = rundir.git_output("diff", "HEAD", "--", "fedcompress", "tools", repo=repo)
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return f"{commit}+{hashlib.sha256(diff.encode()).hexdigest()[:12]}" if diff else commit


def _pretrain(path: str) -> None:
  from fedcompress.tasks.errors import file_fingerprint
  from fedcompress.tasks.models import pretrain

  print(f"== pretraining the Shakespeare model into {path}: {PRETRAIN}", flush=True)
  pretrain.pretrain_char_rnn(output=path, text_files=list(DICKENS), **PRETRAIN)
  # Beside the model, for the reruns that find it made: which settings made this file.
  durable.write_json(_pretrained_by(path), {
      "file_fingerprint": file_fingerprint(path, whole=True),
      "settings": {**PRETRAIN, "text_files": list(DICKENS)}}, indent=1)


def _pretrained_by(path: str) -> str:
  return path + ".pretrained_by.json"


def _parameters(name: str) -> int:
  """Model parameters of a dataset's runs (every one of which a client sends)."""
  if name == "digits":
    from fedcompress import tasks

    return tasks.digits_task(seed=0).keras_model_fn().count_params()
  from fedcompress.tasks.shakespeare import load_pretrained

  return load_pretrained(FLAGS.pretrained_model).count_params()


def _coordinates(name: str, root: str, summaries: list[dict]) -> int:
  """What each run's clients sent in all: rounds x clients per round x parameters.

  The rounds are those the runs' metrics.csv hold: config.json keeps the first start's
  `rounds`, and a sweep raising --rounds resumes the runs (2 rounds resumed to 3 gave
  3.60 bits per coordinate for 2.40). Clients per round cannot change on resume.
  """
  rounds = {s["rounds"] for s in summaries}
  if len(rounds) != 1:
    raise ValueError(f"the runs under {root} ran different numbers of rounds "
                     f"({', '.join(map(str, sorted(rounds)))}): rerun with one --rounds")
  with open(os.path.join(root, summaries[0]["run"], "config.json")) as f:
    config = json.load(f)
  return rounds.pop() * config["clients_per_round"] * _parameters(name)


def _bits() -> list[int]:
  return [int(b) for b in FLAGS.bits]


def _probe_task(name: str, seed: int):
  """(task, initial weights or None) of the entropy probe: a run's first round."""
  if name == "digits":
    from fedcompress import tasks

    return tasks.digits_task(num_clients=20, alpha=1.0, epochs=3, batch_size=20,
                             seed=seed), None
  from fedcompress.tasks.shakespeare import build_shakespeare_task, load_pretrained

  pretrained = load_pretrained(FLAGS.pretrained_model)
  setup = build_shakespeare_task(pretrained, cache_dir=SHAKESPEARE_DATA, epochs=1,
                                 max_batches=5, pad_short_clients=True, max_eval_batches=1,
                                 seed=seed)
  return setup.task, pretrained.get_weights()


def _probe_widths() -> list[int]:
  """The widths (b)'s entropy probe measures: (a)'s defaults and every one of --bits."""
  return sorted({*answers_table.QUANTIZER_BITS, *_bits()})


def entropy_probe(name: str, seeds: list[int]) -> dict[int, dict[int, dict[str, float]]]:
  """seed -> quantizer width -> entropy, Huffman and bit-packed bits per symbol.

  Measured (`tools.symbol_entropy`) on the first-round updates of the probe's clients,
  per seed; kept in `<root>/<dataset>/entropy_probe.json` with its settings, its code
  (`_code`) and the pretrained model's digest, and reused while they are the same.
  """
  from fedcompress.tasks.errors import file_fingerprint
  from tools import symbol_entropy

  probe = DATASETS[name]["probe"]
  # (b) needs no runs: it measures every width of (a)'s default, whatever --bits says.
  codecs = {b: answers_table.huffman_codec(b)
            for b in _probe_widths()}
  pretrained = FLAGS.pretrained_model if name == "shakespeare" else None
  # A probe made by other code, or from another model at the same path, is measured
  # again, as one of other settings always was. The sweep refuses a run of other
  # settings instead (minutes of training the user may want kept) and reuses one made by
  # other code, naming that code in the block; the probe is seconds of work the block
  # names no code of its own for, so it is made by the code the block is stamped with.
  key = {"probe": probe, "codecs": codecs, "seeds": seeds, "pretrained_model": pretrained,
         rundir.PRETRAINED_DIGEST: (file_fingerprint(pretrained, whole=True) if pretrained
                                    else None),
         "code": _code()}
  path = os.path.join(FLAGS.root_output_dir, name, "entropy_probe.json")
  if os.path.exists(path):
    try:
      with open(path) as f:
        cached = json.load(f)
      if cached["settings"] == json.loads(json.dumps(key)):
        return {int(s): {int(b): v for b, v in r.items()}
                for s, r in cached["result"].items()}
      print(f"== {name}: {path} holds a probe of other settings, code or model: measuring "
            "it again", flush=True)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
      # A damaged cache ended the whole answers run in an error that named no file.
      print(f"== {name}: {path} cannot be read ({type(e).__name__}: {e}): measuring it "
            "again", flush=True)
  result = {}
  for seed in seeds:
    print(f"== {name}: entropy probe, seed {seed}: first-round updates of "
          f"{probe['clients']} client(s) from {probe['from']}", flush=True)
    task, initial = _probe_task(name, seed)
    updates = symbol_entropy.client_updates(task, initial, task.client_ids[:probe["clients"]],
                                            probe["learning_rate"], seed=seed)
    result[seed] = symbol_entropy.measure_updates(codecs, updates, probe["threshold"])
  os.makedirs(os.path.dirname(path), exist_ok=True)
  # Whole or not at all, as the runs' records.
  durable.write_json(path, {"settings": key, "result": result}, indent=1)
  return result


def run_dataset(name: str, seeds: list[int]) -> dict:
  """Runs (or reuses) every configuration of one dataset and answers the questions."""
  spec = DATASETS[name]
  common = spec["common_flags"].format(model=FLAGS.pretrained_model)
  if FLAGS.probe_only:
    entropy_probe(name, seeds)
    return None
  runs = [SweepRun(config, (f"--aggregate_encoder={codec}",))
          for config, codec in answers_table.configurations(_bits()).items()
          if not FLAGS.configs or config in FLAGS.configs]
  root = os.path.join(FLAGS.root_output_dir, name)
  summaries = run_sweep(runs, root, experiment=spec["experiment"], common_flags=common,
                        baseline=runs[0].name, seeds=seeds)
  if FLAGS.configs:
    return None
  coordinates = _coordinates(name, root, summaries)
  acc = answers_table.by_seed(summaries, m.EVAL_ACCURACY)
  raw = answers_table.by_seed(summaries, m.AGGREGATE_CUMULATIVE_BITS)
  sent = answers_table.by_seed(
      [{**s, m.AGGREGATE_CUMULATIVE_CODED_BITS: (s.get(m.AGGREGATE_CUMULATIVE_CODED_BITS)
                                                 or s[m.AGGREGATE_CUMULATIVE_BITS])}
       for s in summaries], m.AGGREGATE_CUMULATIVE_CODED_BITS)
  adaptive = f"adaptive{answers_table.BUDGET_BITS}"
  answers = {
      "nonuniform": answers_table.nonuniform_answer(acc, raw, coordinates),
      "huffman": answers_table.huffman_answer(entropy_probe(name, seeds), raw[adaptive],
                                              sent[adaptive]),
      "adaptive": answers_table.adaptive_answer(acc, raw, sent, coordinates),
  }
  return {"title": spec["title"], "experiment": spec["experiment"],
          "common_flags": common, "root_output_dir": root, "coordinates": coordinates,
          "probe": {**spec["probe"], "widths": _probe_widths()}, "runs": summaries,
          "answers": answers}


def _json(results: dict, settings: dict) -> dict:
  out = {"settings": settings, "datasets": {}}
  for name, result in results.items():
    out["datasets"][name] = {
        **{k: v for k, v in result.items() if k != "answers"},
        "answers": {k: {"rows": a.rows, "sentence": a.sentence}
                    for k, a in result["answers"].items()}}
  return out


def pretrained_record(path: str) -> dict:
  """What answers.json says of the Shakespeare runs' pretrained model.

  The settings it was pretrained with only when this tool trained it (`_pretrain`'s
  record beside it, of the same content; a rerun after Ctrl-C or a --configs split finds
  the file made): a file it was given may come from other code or settings (the
  README's larger model), which it cannot know. The model by its content either way.
  """
  from fedcompress.tasks.errors import file_fingerprint

  fingerprint = file_fingerprint(path, whole=True)
  try:
    with open(_pretrained_by(path)) as f:
      made = json.load(f)
  except (OSError, ValueError):  # None (a model of its own), or damaged: not known.
    made = None
  record = {"path": path, "file_fingerprint": fingerprint}
  if isinstance(made, dict) and made.get("file_fingerprint") == fingerprint:
    return {**record, "pretrained_here": made.get("settings")}
  return {**record, "given": True}


def main(argv):
  if len(argv) > 1:
    return fail(f"unexpected arguments: {' '.join(argv[1:])}")
  os.chdir(REPO_ROOT)
  runtime.install_signal_handlers()
  # Empty lists would run nothing and then write an empty block over the README's.
  if not FLAGS.datasets:
    return fail(f"--datasets is empty; valid: {', '.join(DATASETS)}")
  if not FLAGS.seeds:
    return fail("--seeds is empty: the answers compare configurations seed by seed")
  unknown = sorted(set(FLAGS.datasets) - set(DATASETS))
  if unknown:
    return fail(f"unknown --datasets {', '.join(unknown)}; valid: {', '.join(DATASETS)}")
  try:
    seeds = parse_seeds(FLAGS.seeds)
  except ValueError as e:
    return fail(str(e))
  try:
    configurations = answers_table.configurations([int(b) for b in FLAGS.bits])
  except ValueError as e:
    return fail(f"--bits: {e}")
  unknown = sorted(set(FLAGS.configs) - set(configurations))
  if unknown:
    return fail(f"unknown --configs {', '.join(unknown)}; valid: {', '.join(configurations)}")
  try:  # Else a traceback after the whole sweep.
    check_output_file(FLAGS.output)
  except ValueError as e:
    return fail(f"--output: {e}")
  if FLAGS.readme:
    try:
      codec_table.read_readme(FLAGS.readme, "answers")
    except ValueError as e:
      return fail(f"--readme: {e}")
  if "shakespeare" in FLAGS.datasets:
    if not os.path.exists(os.path.join(SHAKESPEARE_DATA, "shakespeare.sqlite")):
      return fail(f"Shakespeare needs {SHAKESPEARE_DATA}/shakespeare.sqlite "
                  "(or pass --datasets=digits)")
    if not os.path.exists(FLAGS.pretrained_model):
      _pretrain(FLAGS.pretrained_model)
  settings = {
      "command": "python -m tools.answers " + " ".join(
          f"--{k}={v}" for k, v in (("seeds", ",".join(FLAGS.seeds)),
                                    ("bits", ",".join(FLAGS.bits)),
                                    ("datasets", ",".join(FLAGS.datasets)),
                                    ("root_output_dir", FLAGS.root_output_dir),
                                    ("output", FLAGS.output),
                                    ("pretrained_model", FLAGS.pretrained_model),
                                    ("readme", FLAGS.readme)) if v),
      "commit": _commit(),
      "date": datetime.date.today().isoformat(),
      "seeds": seeds, "output": FLAGS.output,
      "configurations": configurations,
  }
  if "shakespeare" in FLAGS.datasets:
    settings["pretrained_model"] = pretrained_record(FLAGS.pretrained_model)
  results = {}
  try:
    for name in FLAGS.datasets:
      results[name] = run_dataset(name, seeds)
  except Exception as e:  # noqa: BLE001 (what is not a run's failure is re-raised)
    code = sweep_failure(e, experiment="shakespeare" if name == "shakespeare" else "emnist")
    if code is None:
      raise
    return code
  if FLAGS.probe_only:
    print("probes done (--probe_only: no runs, no answers)")
    return 0
  if FLAGS.configs:
    print("runs done; the answers need every configuration: rerun without --configs")
    return 0
  os.makedirs(os.path.dirname(FLAGS.output) or ".", exist_ok=True)
  with open(FLAGS.output, "w") as f:
    json.dump(_json(results, settings), f, indent=1, default=str)
    f.write("\n")
  section = answers_table.format_section(results, settings)
  print(section)
  if FLAGS.readme:
    codec_table.update_readme(FLAGS.readme, "answers", section)
    print(f"{FLAGS.readme} updated")
  return 0


if __name__ == "__main__":
  runtime.install()
  app.run(interruptible(main, "finished runs are kept; rerun the same command to continue"),
          flags_parser=parse_flags)
