"""tools/shakespeare_results.py: the README's block, from runs' summaries (no TensorFlow)."""

import pytest

GIBIT = 2**30
PRETRAINED = {"pretrained_eval": {"accuracy": 0.4096, "num_batches": 60},
              "sanity": {"client_accuracy": 0.3989, "random_accuracy": 0.0108,
                         "expected_random_accuracy": 0.0116},
              "sanity_client": "THE_TRAGEDY_OF_KING_LEAR_KING"}


def _run(name: str, codec: str, bits: float, accuracy: float) -> dict:
  """A run as `read_run` returns it (what `format_block` reads of it)."""
  return {"run": name, "codec": codec, "rounds": 50, "pretrained": PRETRAINED,
          "settings": {"rounds": 50}, "sources": ["463361abffba"], "wall_time_s": 360.0,
          "eval_accuracy": accuracy, "broadcast_bits": int(bits * GIBIT),
          "aggregate_bits": int(bits * GIBIT)}


PLAIN = _run("sampled", "none", 15.52, 0.4911)
U8 = _run("sampled_u8", "broa: uniform(bits=8)>10000; aggr: uniform(bits=8)>10000", 4.47,
          0.4913)


@pytest.fixture(scope="module")
def shakespeare_results(load_binary):
  # Its absl flags (--readme) would clash with other tools' binaries loaded in this process.
  with load_binary("tools/shakespeare_results.py") as module:
    yield module


def test_the_others_are_compared_with_the_uncompressed_run(shakespeare_results):
  block = shakespeare_results.format_block([PLAIN, U8])
  assert ("sampled_u8 sent 3.47x fewer broadcast bits and 3.47x fewer aggregate bits than "
          "sampled (11.05Gibit and 11.05Gibit saved).") in block


def test_a_compressed_first_run_is_refused(shakespeare_results):
  # The ratios would read '0.29x fewer' and the savings be negative.
  with pytest.raises(ValueError, match=r"sampled_u8 is not uncompressed \(broa: uniform"
                     r".*--runs takes the uncompressed run first"):
    shakespeare_results.format_block([U8, PLAIN])
