"""fedcompress.units: bit amounts as the TFF tutorial printed them."""

from fedcompress.units import GIBIT, MIBIT, format_bits


def test_each_unit():
  assert format_bits(512) == "512bit"
  assert format_bits(2048) == "2.00Kibit"
  assert format_bits(3 * MIBIT) == "3.00Mibit"
  assert format_bits(1.5 * GIBIT) == "1.50Gibit"


def test_a_negative_amount_is_in_the_unit_of_its_size():
  # A difference of two runs' bits (one saved less than nothing) is not raw bits.
  assert format_bits(-11_864_847_155) == "-11.05Gibit"
  assert format_bits(-3 * MIBIT) == "-3.00Mibit"
  assert format_bits(-2048) == "-2.00Kibit"
  assert format_bits(-512) == "-512bit"
  assert format_bits(0) == "0bit"
