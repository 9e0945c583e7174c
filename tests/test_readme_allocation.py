"""The README's down_32x plan is what `AllocatedCodec.plan(...).allocate(...)` gives."""

import re

import tensorflow as tf

from fedcompress.codecs import CodecSpec
from fedcompress.codecs.allocation import AllocatedCodec

# The tutorial CNN's trainable weights, in the model's order.
_CNN = {"conv2d/kernel": (5, 5, 1, 32), "conv2d/bias": (32,), "conv2d_1/kernel": (5, 5, 32, 64),
        "conv2d_1/bias": (64,), "dense/kernel": (3136, 512), "dense/bias": (512,),
        "dense_1/kernel": (512, 10), "dense_1/bias": (10,)}


def _flags(path) -> dict[str, str]:
  return dict(line[2:].split("=", 1) for line in path.read_text().splitlines()
              if line.startswith("--") and "=" in line)


def _number(cell: str) -> float:
  return float(cell.replace(",", ""))


def test_readme_down_32x_plan_is_the_allocators(repo_root):
  # The table had gone stale: it showed widths the allocator no longer picks (1, 0.99,
  # 0.98, 3, 1), with more expected error than its own choice, while the README's
  # measured run below it reported the allocator's.
  flags = _flags(repo_root / "configs" / "codecs" / "down_32x.flags")
  codec = AllocatedCodec(
      CodecSpec(flags["broadcast_encoder"], {}, threshold=int(flags["compression_threshold"])),
      float(flags["broadcast_bits_per_coordinate"]),
      tuple(_number(w) for w in flags["broadcast_widths"].split(",")))
  plan = codec.plan([tf.TensorSpec(s) for s in _CNN.values()],
                    [f"{name}:0" for name in _CNN], direction="broadcast")
  # Equal variance per coordinate: each tensor's squared norm is its size.
  choice = plan.allocate([float(t.num_elements) for t in plan.encoded])

  text = (repo_root / "README.md").read_text()
  table = text[text.index("| tensor | coordinates | width | bits |"):]
  rows = [line.strip("|").split("|") for line in table[:table.index("\n\n")].splitlines()[2:]]
  expected = [[t.name.removesuffix(":0"), t.num_elements, t.widths[c], t.costs[c]]
              for t, c in zip(plan.encoded, choice, strict=True)]
  got = [[name.strip(), _number(n), _number(w), _number(b)] for name, n, w, b in rows[:-1]]
  assert got == expected
  assert _number(rows[-1][3]) == plan.budget - plan.allocatable  # Unencoded + choices.
  total = plan.total_bits(choice)
  uncompressed = 32 * sum(tf.TensorShape(s).num_elements() for s in _CNN.values())
  line = re.search(r"([\d,]+) bits per client against ([\d,]+) uncompressed: ([\d.]+)x",
                   table).groups()
  assert (_number(line[0]), _number(line[1])) == (total, uncompressed)
  assert line[2] == f"{uncompressed / total:.1f}"
