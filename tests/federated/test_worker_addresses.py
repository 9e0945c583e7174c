"""Every address of this machine names one worker; an IPv6 host needs brackets (s47 R6).

`127.0.0.1:P,127.0.0.2:P`, `[::1]:P,127.0.0.1:P`, `0.0.0.0:P,127.0.0.1:P` and this
host's own address beside `localhost` reached one worker listening on all interfaces,
which ran both shares of every round while the run recorded two workers.
"""

import pytest

from fedcompress.federated import runtime


@pytest.mark.parametrize("workers", [
    ["127.0.0.1:47321", "127.0.0.2:47321"],
    ["[::1]:47321", "127.0.0.1:47321"],
    ["0.0.0.0:47321", "localhost:47321"],
    ["[::ffff:127.0.0.1]:47321", "localhost:47321"],  # Mapped: not loopback to Python 3.11.
])
def test_addresses_of_this_machine_are_one_worker(workers):
  with pytest.raises(ValueError, match=r"are one worker: list each worker once"):
    runtime.check_distinct_workers(workers)


def test_this_hosts_own_address_is_this_machine():
  own = sorted(runtime._this_hosts_addresses())  # noqa: SLF001
  if not own:
    pytest.skip("this machine's name resolves to no address")
  host = f"[{own[0]}]" if ":" in own[0] else own[0]
  with pytest.raises(ValueError, match=r"are one worker"):
    runtime.check_distinct_workers([f"{host}:47321", "localhost:47321"])


def test_other_ports_and_other_hosts_stay_apart():
  runtime.check_distinct_workers(["127.0.0.1:47321", "127.0.0.2:47322"])
  runtime.check_distinct_workers(["192.0.2.10:8000", "192.0.2.11:8000", "localhost:8000"])


@pytest.mark.parametrize("bad", ["::1:8000", "fe80::1:8000"])
def test_an_ipv6_host_without_brackets_is_refused(bad):
  # Read as the host '::1' and waited for, then blamed on a worker not running.
  with pytest.raises(ValueError, match=r"IPv6 host in brackets"):
    runtime.parse_worker_address(bad)
  assert runtime.parse_worker_address("[::1]:8000") == "[::1]:8000"
