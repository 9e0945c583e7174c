"""Bit units as the TFF tutorial printed them (no TensorFlow import: cheap for tools)."""

MIBIT = 2**20
GIBIT = 2**30


def format_bits(bits: float) -> str:
  """'507.62Mibit', '1.49Gibit', '2.00Kibit', '512bit'; '-1.49Gibit' below zero.

  Negative amounts are differences (bits one run saved over another that sent more):
  in the unit of their size, as positive ones.
  """
  if bits < 0:
    return "-" + format_bits(-bits)
  if bits >= GIBIT:
    return f"{bits / GIBIT:.2f}Gibit"
  if bits >= MIBIT:
    return f"{bits / MIBIT:.2f}Mibit"
  if bits >= 2**10:
    return f"{bits / 2**10:.2f}Kibit"
  return f"{bits:.0f}bit"
